"""The training pipeline: ingest (beside champion-reference) -> validate -> engineer -> train -> evaluate -> compare
-> dsl.If(promote) -> deploy, with export (SavedModel + TFLite) beside evaluate and compare (it takes the
binary threshold train recorded with the model) and evidently's drift report (report only) beside
engineer and train; compiled with --rollout, the rollout step after deploy when deploy left a canary
(pipelines/training_rollout.py).

Where it runs (target, GPU, images, secrets) is fixed when the pipeline is built, by
:class:`CompileOptions`; what changes per run is a pipeline parameter.
"""


import dataclasses
import inspect
from typing import Dict, List, NamedTuple, Optional

from kfp import dsl
from kfp.dsl import Artifact, Metrics, Model

from components._shared.images import IMAGES
from components._shared.params import PARAMS, args_doc
from components.compare.component import compare_models
from components.deploy.component import deploy_model
from components.deploy.kserve_api import COMPILE_OPTIONS, KServeConfig
from components.engineer.component import engineer_features
from components.evaluate.component import evaluate_model
from components.export.component import export_model
from components.ingest.component import ingest_data
from components.train.component import train_model
from components.validate.component import champion_reference, drift_report, validate_data
from pipelines import training_rollout

PIPELINE_NAME = "kfp-tf-gate-training"
DESCRIPTION = "Train a TensorFlow binary classifier, gate it against the champion, deploy only if better."
# The parameters' meanings, from the parameter table (KFP copies them into the compiled YAML).
_DOC = f"""{DESCRIPTION}

Args:
{args_doc()}
"""
TARGETS = ("local", "kubeflow", "vertex")
KSERVE_FIELDS = {f.name: f for f in dataclasses.fields(KServeConfig)}
DEFAULT_SERVING_MOUNT = "/models"
# The pipeline's declared outputs: compare's decision, export's artifacts, ingest's record (how rows were split).
class PipelineOutputs(NamedTuple):
    decision: Artifact
    saved_model: Model
    tflite_model: Model
    export_metrics: Metrics
    ingest_info: Artifact


def _kserve_options(cls):
    """Give ``cls`` a ``kserve_*`` field per KServe setting a compile fixes, typed and defaulted by
    :class:`components.deploy.kserve_api.KServeConfig` (one definition; namespace: empty = none)."""
    for option, name in COMPILE_OPTIONS.items():
        field = KSERVE_FIELDS[name]
        cls.__annotations__[option] = field.type
        setattr(cls, option, "" if field.default is dataclasses.MISSING else field.default)
    return cls


@dataclasses.dataclass(frozen=True)
@_kserve_options
class CompileOptions:
    """Build-time settings of a compiled pipeline.

    Attributes:
        target: "kubeflow" (kfp-kubernetes GPU placement and secrets), "vertex" (accelerator type;
            single-document YAML that Vertex accepts) or "local" (kfp.local).
        gpu_type: Kubeflow: the resource name (nvidia.com/gpu); Vertex: the accelerator type (NVIDIA_TESLA_T4, ...).
        gpu_count: GPUs on the train task; 0 trains on CPU.
        gpu_node_selector: Kubeflow node label "key=value" that GPU nodes carry.
        train_cpu / train_memory: Requests (Kubeflow) / limits (Vertex) of the train task.
        mlflow_secret: Kubeflow secret whose keys become MLflow env vars on tracking tasks; empty for none.
        vertex_mlflow_secret: Vertex: Secret Manager secret (``projects/P/secrets/NAME[/versions/V]``)
            holding JSON {"username", "password"}; its *name* goes into KFP_TF_GATE_MLFLOW_SECRET on the
            tracking tasks, which read it with the run's service account; empty for none.
        serving_pvc: Kubeflow: "CLAIM[:/mount/path]" mounts that PersistentVolumeClaim into deploy's pod
            (default path /models) and makes the mount path serving_base_dir's default; empty for no
            volume (the serving base must then be an object-store URI such as gs://...).
        train_workers: Replicas of multi-worker training (MultiWorkerMirroredStrategy): 1 trains in the
            train task's own pod; N > 1 makes the train task launch a Vertex AI CustomJob (chief pool + N-1
            workers) or a Kubeflow TFJob (Chief + N-1 Workers) and wait for it (components/train/launch.py).
        train_machine_type: Vertex, N > 1: machine type of every replica (default n1-standard-8).
        train_accelerator: Vertex, N > 1: "TYPE:COUNT" accelerators of every replica; default gpu_type/gpu_count
            (Kubeflow replicas get the train pod's resources: train_cpu/train_memory, gpu_type/gpu_count).
        deploy_target: "" (the serving base, and Vertex AI when the run names a project) or "kserve"
            (Kubeflow: deploy also creates or patches a KServe InferenceService and waits for it to be Ready;
            components/deploy/kserve.py). The kserve_* options below configure it.
        kserve_namespace, kserve_service_account, kserve_runtime_version, kserve_storage_base, kserve_name,
            kserve_cpu, kserve_memory, kserve_gpu_count, kserve_timeout: The KServe settings, defined once by
            components.deploy.kserve_api.KServeConfig (COMPILE_OPTIONS: option -> field; its types and
            defaults); kserve_namespace is required with deploy_target "kserve". kserve_storage_base
            defaults to pvc://CLAIM with serving_pvc.
        rollout: Add the rollout step (rollout_model) after deploy, run when deploy left a canary
            (pipelines/training_rollout.py): KServe on Kubeflow, the Vertex endpoint on Vertex.
        rollout_prometheus_url / rollout_metrics: Its metrics source: Prometheus (Kubeflow; metric names
            kserve, the default, or tfserving) or "vertex" (Vertex: the endpoint's Cloud Monitoring metrics).
    """

    target: str = "kubeflow"
    gpu_type: str = ""
    gpu_count: int = 1
    gpu_node_selector: str = "cloud.google.com/gke-accelerator=nvidia-tesla-t4"
    train_cpu: str = "4"
    train_memory: str = "16G"
    mlflow_secret: str = "mlflow-credentials"
    serving_pvc: str = ""
    vertex_mlflow_secret: str = ""
    train_workers: int = 1
    train_machine_type: str = ""
    train_accelerator: str = ""
    deploy_target: str = ""
    # kserve_* fields: added by _kserve_options, from components.deploy.kserve_api (KServeConfig).
    rollout: bool = False
    rollout_prometheus_url: str = ""
    rollout_metrics: str = ""

    def __post_init__(self):
        self._check_train_workers()
        self._check_kserve()
        training_rollout.check(self)
        if self.target not in TARGETS:
            raise ValueError(f"unknown target {self.target!r}; expected one of {TARGETS}")
        if self.serving_pvc and self.target == "vertex":
            raise ValueError("--serving-pvc is a Kubeflow option: Vertex AI Pipelines mount no PVCs "
                             "(use a gs:// serving base)")
        if self.vertex_mlflow_secret and self.target == "kubeflow":
            raise ValueError("--vertex-mlflow-secret is a Vertex option: on Kubeflow, --mlflow-secret names a "
                             "Kubernetes secret")
        if self.vertex_mlflow_secret:
            from components._shared.credentials import secret_version_name
            from components._shared.errors import ConfigError

            try:
                secret_version_name(self.vertex_mlflow_secret)
            except ConfigError:
                raise ValueError(f"--vertex-mlflow-secret expects projects/PROJECT/secrets/NAME[/versions/V], "
                                 f"got {self.vertex_mlflow_secret!r}") from None
        claim, _, path = self.serving_pvc.partition(":")
        if self.serving_pvc and (not claim or (path and not path.startswith("/"))):
            raise ValueError(f"--serving-pvc expects CLAIM or CLAIM:/absolute/path, got {self.serving_pvc!r}")

    def _check_train_workers(self) -> None:
        if isinstance(self.train_workers, bool) or not isinstance(self.train_workers, int) or self.train_workers < 1:
            raise ValueError(f"--train-workers must be a whole number of at least 1, got {self.train_workers!r}")
        if self.train_workers > 1 and self.target == "local":
            raise ValueError("multi-worker training (--train-workers > 1) is compiled for kubeflow or vertex")
        if self.train_workers == 1 and (self.train_machine_type or self.train_accelerator):
            raise ValueError("--train-machine-type and --train-accelerator set the replicas of multi-worker "
                             "training: give --train-workers 2 or more")
        if (self.train_machine_type or self.train_accelerator) and self.target == "kubeflow":
            raise ValueError("--train-machine-type and --train-accelerator are Vertex options: on Kubeflow, each "
                             "replica gets the train pod's CPU, memory and GPUs (--gpu-type/--gpu-count)")
        kind, _, count = self.train_accelerator.partition(":")
        if self.train_accelerator and (not kind or not count.isdigit() or int(count) < 1):
            raise ValueError(f"--train-accelerator expects TYPE:COUNT (e.g. NVIDIA_TESLA_T4:1), "
                             f"got {self.train_accelerator!r}")

    @property
    def replica_accelerator(self) -> tuple[str, int]:
        """(type, count) of each multi-worker replica's accelerators; count 0 for CPU replicas."""
        if self.train_accelerator:
            kind, _, count = self.train_accelerator.partition(":")
            return kind, int(count)
        return (self.accelerator, self.gpu_count) if self.gpu_count > 0 else ("", 0)

    def _check_kserve(self) -> None:
        kserve_set = [f.name for f in dataclasses.fields(self)
                      if f.name in COMPILE_OPTIONS and getattr(self, f.name) != f.default]
        if self.deploy_target not in ("", "kserve"):
            raise ValueError(f"--deploy-target is '' (the serving base) or kserve, got {self.deploy_target!r}")
        if self.deploy_target != "kserve":
            if kserve_set:
                raise ValueError(f"--{kserve_set[0].replace('_', '-')} configures --deploy-target kserve")
            return
        if self.target != "kubeflow":
            raise ValueError("--deploy-target kserve is compiled for kubeflow (the InferenceService lives in its cluster)")
        if not self.kserve_namespace:
            raise ValueError("--deploy-target kserve needs --kserve-namespace (the InferenceService's namespace)")
        from components._shared.errors import ConfigError
        from components.deploy import kserve

        try:
            kserve.check(self.kserve_config())
            if self.kserve_name:
                kserve.service_name("", self.kserve_config())
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    def kserve_config(self) -> KServeConfig:
        """The KServe settings deploy reads from KFP_TF_GATE_KSERVE (the kserve_* options)."""
        given = {name: getattr(self, option) for option, name in COMPILE_OPTIONS.items()}
        claim = self.serving_pvc.partition(":")[0]
        given["storage_base"] = given["storage_base"] or (f"pvc://{claim}" if claim else "")
        return KServeConfig(**{**given, "timeout_s": float(given["timeout_s"])})

    @property
    def cluster(self) -> bool:
        """Compiled for a cluster: the registry and serving base must outlive the pods."""
        return self.target != "local"

    @property
    def serving_mount(self) -> tuple[str, str]:
        """(claim, mount path) of the serving PVC, or ("", "") for none."""
        if not self.serving_pvc or self.target != "kubeflow":
            return "", ""
        claim, _, path = self.serving_pvc.partition(":")
        return claim, (path or DEFAULT_SERVING_MOUNT).rstrip("/") or "/"

    @property
    def accelerator(self) -> str:
        if self.gpu_type:
            return self.gpu_type
        return "NVIDIA_TESLA_T4" if self.target == "vertex" else "nvidia.com/gpu"


def _train_component(opts: CompileOptions):
    if opts.train_workers > 1:
        from components.train.component import train_model_multiworker

        return train_model_multiworker
    return train_model


def _multiworker_args(opts: CompileOptions, vertex_project, vertex_location) -> dict:
    """The replicas of multi-worker training (compile options) for train_model_multiworker; {} for one pod."""
    if opts.train_workers == 1:
        return {}
    kind, count = opts.replica_accelerator
    kubeflow = opts.target == "kubeflow"
    return dict(workers=opts.train_workers, platform=opts.target, image=IMAGES.trainer,
                machine_type=opts.train_machine_type, accelerator_type=kind, accelerator_count=count,
                cpu=opts.train_cpu if kubeflow else "", memory=opts.train_memory if kubeflow else "",
                node_selector=opts.gpu_node_selector if kubeflow else "",
                mlflow_secret=opts.mlflow_secret if kubeflow else "",
                vertex_project=vertex_project, vertex_location=vertex_location)


def _place_train(task, opts: CompileOptions) -> None:
    if opts.target == "local" or opts.train_workers > 1:  # multi-worker: the job's replicas are placed
        return
    if opts.target == "kubeflow":
        from kfp import kubernetes

        task.set_cpu_request(opts.train_cpu).set_memory_request(opts.train_memory)
        if opts.gpu_count > 0:
            task.set_accelerator_type(opts.accelerator).set_accelerator_limit(opts.gpu_count)
            key, _, value = opts.gpu_node_selector.partition("=")
            if key:
                kubernetes.add_node_selector(task, label_key=key, label_value=value)
            kubernetes.add_toleration(task, key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")
    else:
        task.set_cpu_limit(opts.train_cpu).set_memory_limit(opts.train_memory)
        if opts.gpu_count > 0:
            task.set_accelerator_type(opts.accelerator).set_accelerator_limit(opts.gpu_count)


def _secrets(task, opts: CompileOptions) -> None:
    """MLflow credentials from a Kubernetes secret, or on Vertex the name of a Secret Manager secret
    the task reads itself (never the credentials in the YAML)."""
    if opts.target == "vertex" and opts.vertex_mlflow_secret:
        from components._shared.credentials import SECRET_ENV

        task.set_env_variable(SECRET_ENV, opts.vertex_mlflow_secret)
    if opts.target == "kubeflow" and opts.mlflow_secret:
        from kfp import kubernetes

        kubernetes.use_secret_as_env(
            task, secret_name=opts.mlflow_secret,
            secret_key_to_env={"MLFLOW_TRACKING_USERNAME": "MLFLOW_TRACKING_USERNAME",
                               "MLFLOW_TRACKING_PASSWORD": "MLFLOW_TRACKING_PASSWORD"},
            optional=True)


def build_pipeline(opts: Optional[CompileOptions] = None):
    """Return the @dsl.pipeline function for these compile options."""
    opts = opts or CompileOptions()
    serving_claim, serving_mount = opts.serving_mount
    # KFP retries every failed attempt (no retry condition exists in the spec, on Kubeflow or Vertex), so
    # the tasks themselves tell errors apart: a deterministic error leaves a marker and the retries fail at
    # once (components/_shared/errors.fail_fast); a lost pod or a transient error retries in full. Backoffs
    # are short: MLflow's client retries 429/5xx itself (7 times) and gcsfs too, so a KFP retry is for a
    # lost pod, which waits for a node anyway; a deterministic failure then ends within ~15 s of backoff.
    # A local run (one process on this machine: no pod to lose) does not retry, as the monitoring pipeline.
    retry = dict(num_retries=2 if opts.cluster else 0, backoff_duration="5s", backoff_factor=2.0,
                 backoff_max_duration="60s")
    # train on preemptible GPU nodes: one more attempt, each resuming from the per-epoch checkpoints.
    retry_preemptible = {**retry, "num_retries": 3 if opts.cluster else 0}

    def training_pipeline(
        data_uri: str,
        label: str,
        model_name: str = PARAMS.model_name,
        mlflow_tracking_uri: str = PARAMS.mlflow_tracking_uri,
        serving_base_dir: str = serving_mount or PARAMS.serving_base_dir,
        task: str = PARAMS.task,
        id_column: str = PARAMS.id_column,
        exclude_columns: List[str] = PARAMS.exclude_columns,
        positive_label: str = PARAMS.positive_label,
        schema_uri: str = PARAMS.schema_uri,
        anomaly_severity: Dict[str, str] = PARAMS.anomaly_severity,
        psi_drift_share: float = PARAMS.psi_drift_share,
        bucketize_columns: List[str] = PARAMS.bucketize_columns,
        num_buckets: int = PARAMS.num_buckets,
        crosses: List[str] = PARAMS.crosses,
        epochs: int = PARAMS.epochs,
        batch_size: int = PARAMS.batch_size,
        learning_rate: float = PARAMS.learning_rate,
        hidden_units: List[int] = PARAMS.hidden_units,
        dropout: float = PARAMS.dropout,
        seed: int = PARAMS.seed,
        checkpoint_root: str = PARAMS.checkpoint_root,
        slice_columns: List[str] = PARAMS.slice_columns,
        min_auc: float = PARAMS.min_auc,
        max_ece: float = PARAMS.max_ece,
        max_auc_gap: float = PARAMS.max_auc_gap,
        min_r2: float = PARAMS.min_r2,
        max_rmse: float = PARAMS.max_rmse,
        min_improvement: float = PARAMS.min_improvement,
        require_significance: bool = PARAMS.require_significance,
        tflite_quantization: str = PARAMS.tflite_quantization,
        max_tflite_diff: float = PARAMS.max_tflite_diff,
        require_approval: bool = PARAMS.require_approval,
        vertex_project: str = PARAMS.vertex_project,
        vertex_location: str = PARAMS.vertex_location,
        vertex_endpoint: str = PARAMS.vertex_endpoint,
        canary_traffic_percent: int = PARAMS.canary_traffic_percent,
        model_card: str = PARAMS.model_card,
        *rollout_args,  # compile --rollout: the rollout step's parameters (training_rollout.parameters)
    ) -> PipelineOutputs:
        ingest_task = ingest_data(data_uri=data_uri, label=label, id_column=id_column,
                                  positive_label=positive_label, eval_fraction=PARAMS.eval_fraction,
                                  test_fraction=PARAMS.test_fraction, seed=seed, min_rows=PARAMS.min_rows,
                                  task=task)
        # No task is cached. KFP's cache key includes the input artifacts, and ingest must re-read its
        # source every run (the same URI may hold new rows), so it writes new artifacts every run and
        # no downstream task could ever hit the cache: flags saying otherwise would promise what never
        # happens.
        ingest_task.set_display_name("ingest").set_caching_options(False)

        # The registry lookup does not depend on ingest: on a cluster both run at once.
        # ... and, compiled for a cluster, it checks first that the registry and the serving base
        # outlive the pods (one-sentence error otherwise; see components/_shared/wiring.py).
        reference_task = champion_reference(model_name=model_name, mlflow_tracking_uri=mlflow_tracking_uri,
                                            schema_uri=schema_uri, require_remote_registry=opts.cluster,
                                            serving_base_dir=serving_base_dir, serving_mounts=serving_mount,
                                            vertex_project=vertex_project)
        reference_task.set_display_name("champion-reference").set_caching_options(False).set_retry(**retry)
        _secrets(reference_task, opts)

        validate_task = validate_data(
            train_data=ingest_task.outputs["train_data"], eval_data=ingest_task.outputs["eval_data"],
            test_data=ingest_task.outputs["test_data"], ingest_info=ingest_task.outputs["ingest_info"],
            reference=reference_task.outputs["reference"],
            id_column=id_column, exclude_columns=exclude_columns, anomaly_severity=anomaly_severity,
            psi_drift_share=psi_drift_share)
        validate_task.set_display_name("validate").set_caching_options(False)

        # Report only (validate's PSI gates): beside engineer and train, off the path to training.
        drift_task = drift_report(train_data=ingest_task.outputs["train_data"], test_data=ingest_task.outputs["test_data"],
                                  reference=reference_task.outputs["reference"], schema=validate_task.outputs["schema"])
        drift_task.set_display_name("drift-report").set_caching_options(False)

        engineer_task = engineer_features(train_data=ingest_task.outputs["train_data"],
                                          schema=validate_task.outputs["schema"],
                                          max_vocab=PARAMS.max_vocab, log_skew_threshold=PARAMS.log_skew_threshold,
                                          bucketize_columns=bucketize_columns, num_buckets=num_buckets,
                                          crosses=crosses)
        engineer_task.set_display_name("engineer").set_caching_options(False)

        train_task = _train_component(opts)(
            train_data=ingest_task.outputs["train_data"], eval_data=ingest_task.outputs["eval_data"],
            transform_spec=engineer_task.outputs["transform_spec"], ingest_info=ingest_task.outputs["ingest_info"],
            model_name=model_name, mlflow_tracking_uri=mlflow_tracking_uri, epochs=epochs,
            batch_size=batch_size, learning_rate=learning_rate, hidden_units=hidden_units, dropout=dropout,
            early_stopping_patience=PARAMS.early_stopping_patience, class_weight=PARAMS.class_weight,
            seed=seed, checkpoint_root=checkpoint_root, pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
            pipeline_root=dsl.PIPELINE_ROOT_PLACEHOLDER, job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            **_multiworker_args(opts, vertex_project, vertex_location))
        # Preemption: a retry resumes from the checkpoints under <root>/checkpoints/<job id>/train.
        train_task.set_display_name("train").set_caching_options(False).set_retry(**retry_preemptible)
        _place_train(train_task, opts)
        _secrets(train_task, opts)

        evaluate_task = evaluate_model(model=train_task.outputs["model"], test_data=ingest_task.outputs["test_data"],
                                       eval_data=ingest_task.outputs["eval_data"], slice_columns=slice_columns,
                                       min_slice_rows=PARAMS.min_slice_rows)
        evaluate_task.set_display_name("evaluate").set_caching_options(False)

        # Beside evaluate and compare: train recorded the decision threshold with the model.
        export_task = export_model(model=train_task.outputs["model"], test_data=ingest_task.outputs["test_data"],
                                   model_name=model_name, tflite_quantization=tflite_quantization,
                                   max_tflite_diff=max_tflite_diff)
        export_task.set_display_name("export").set_caching_options(False)

        compare_task = compare_models(
            model=train_task.outputs["model"], test_data=ingest_task.outputs["test_data"],
            evaluation=evaluate_task.outputs["evaluation"], model_name=model_name,
            mlflow_tracking_uri=mlflow_tracking_uri, serving_base_dir=serving_base_dir,
            min_auc=min_auc, max_ece=max_ece, max_auc_gap=max_auc_gap,
            min_improvement=min_improvement, require_significance=require_significance,
            bootstrap_samples=PARAMS.bootstrap_samples, min_r2=min_r2, max_rmse=max_rmse)
        compare_task.set_display_name("compare").set_caching_options(False).set_retry(**retry)
        _secrets(compare_task, opts)
        if serving_claim:  # compare checks that the served champion is the registered one and loads
            from kfp import kubernetes

            kubernetes.mount_pvc(compare_task, pvc_name=serving_claim, mount_path=serving_mount)

        with dsl.If(compare_task.outputs["Output"] == True, name="promote"):  # noqa: E712 (KFP condition syntax)
            deploy_task = deploy_model(
                saved_model=export_task.outputs["saved_model"], model=train_task.outputs["model"],
                train_data=ingest_task.outputs["train_data"], schema=validate_task.outputs["schema"],
                evaluation=evaluate_task.outputs["evaluation"], decision=compare_task.outputs["decision"],
                ingest_info=ingest_task.outputs["ingest_info"], model_name=model_name,
                mlflow_tracking_uri=mlflow_tracking_uri, serving_base_dir=serving_base_dir,
                require_approval=require_approval, pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                vertex_project=vertex_project, vertex_location=vertex_location,
                vertex_endpoint=vertex_endpoint, canary_traffic_percent=canary_traffic_percent,
                export_metrics=export_task.outputs["metrics"], model_card_file=model_card)
            deploy_task.set_display_name("deploy").set_caching_options(False).set_retry(**retry)
            # Lineage for the model card; compile rewrites the image name with --image-registry/--image-tag.
            deploy_task.set_env_variable("KFP_TF_GATE_IMAGE", IMAGES.trainer)
            if opts.deploy_target == "kserve":  # deploy also applies the InferenceService (canary: the run parameter)
                from components.deploy.kserve import ENV

                deploy_task.set_env_variable(ENV, opts.kserve_config().to_json())
            _secrets(deploy_task, opts)
            if serving_claim:
                from kfp import kubernetes

                kubernetes.mount_pvc(deploy_task, pvc_name=serving_claim, mount_path=serving_mount)
            if opts.rollout:  # after deploy, when it left a canary (training_rollout)
                run = dict(model_name=model_name, mlflow_tracking_uri=mlflow_tracking_uri,
                           require_approval=require_approval, canary_traffic_percent=canary_traffic_percent,
                           vertex_project=vertex_project, vertex_location=vertex_location,
                           vertex_endpoint=vertex_endpoint)
                settings = {p.name[len(training_rollout.PREFIX):]: value
                            for p, value in zip(rollout_params, rollout_args, strict=True)}
                _secrets(training_rollout.add_rollout_task(opts, deploy_task, run, settings, retry), opts)

        # What a run's summary is made of (see pipelines/local.py: summary_from_outputs). Deploy runs
        # inside dsl.If, so its result is not an output: it is read from the registry deploy writes.
        return PipelineOutputs(decision=compare_task.outputs["decision"], saved_model=export_task.outputs["saved_model"],
                               tflite_model=export_task.outputs["tflite_model"],
                               export_metrics=export_task.outputs["metrics"],
                               ingest_info=ingest_task.outputs["ingest_info"])

    training_pipeline.__doc__ = _DOC + training_rollout.args_doc(opts)
    # KFP reads the pipeline's parameters from its signature and passes them positionally: the rollout
    # step's come after the others, into *rollout_args.
    rollout_params = training_rollout.parameters(opts)
    own = inspect.signature(training_pipeline)
    training_pipeline.__signature__ = own.replace(parameters=[
        p for p in own.parameters.values() if p.kind != p.VAR_POSITIONAL] + rollout_params)
    return dsl.pipeline(name=PIPELINE_NAME, description=DESCRIPTION)(training_pipeline)
