"""Container contract: every image role's lock is complete for the components that run in it.

For each role a fresh virtualenv is built only from ``containers/<role>/requirements.lock``
(``pip install --no-deps --require-hashes``, as the Dockerfile does) plus this project's wheel
(``--no-deps``). Each of the role's components is then run exactly as the KFP launcher runs
it: the executor's ``command`` and ``args`` from ``compiled/kubeflow/*.yaml``, ``{{$}}``
replaced by an executor input built from the component's input and output definitions,
``python3`` resolving to the role's virtualenv, a minimal environment and a working directory
outside the checkout (so the code can only come from the installed wheel). Inputs are real:
the project's components run in the development virtualenv produce them.

Virtualenvs are cached under ``.cache/role-venvs/<role>-<hash of lock and Python>`` (or
``$KFP_TF_GATE_ROLE_VENVS``); the project wheel is rebuilt and reinstalled every session.
The tests run role by role (``conftest.py``); with ``KFP_TF_GATE_ONE_ROLE_VENV=1`` (CI) a
role's venv is removed before the next one is built, so at most one (<= 3.6 GB) is on disk.
Measurements (site-packages size per role; per component: run time, cold start = a fresh
interpreter importing what the run imported, wall and CPU seconds) are written to
``.cache/container-contract.json`` and printed at the end of the session.

Run with ``make test-containers`` (``pytest -m heavy``).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import yaml

from components._shared.images import ROLES, Images
from components._shared.params import TABLE, with_defaults
from components.monitor.policy import component_defaults

pytestmark = pytest.mark.heavy

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.environ.get("KFP_TF_GATE_ROLE_VENVS") or os.path.join(ROOT, ".cache", "role-venvs")
REPORT = os.path.join(ROOT, ".cache", "container-contract.json")
MODEL = "contract-model"
RUN_TIMEOUT = 900

# Modules each image must provide (cloudbuild.yaml imports the same ones in the built image).
ROLE_IMPORTS = {
    "data": [
        "kfp.dsl.executor_main",
        "components.ingest.component",
        "components.ingest.core",
        "components.validate.component",
        "components.validate.component_io",
        "components.validate.core",
        "components.engineer.component",
        "components.engineer.core",
        "components.ingest.bigquery",  # bq:// sources: SQL split, Storage Read API streams
        "pandas",
        "pyarrow.parquet",
        "sklearn.metrics",
        "evidently",
        "evidently.presets",
        "mlflow",
        "fsspec",
        "gcsfs",
        "s3fs",  # s3:// and Kubeflow's minio:// pipeline root (components/_shared/object_store.py)
        "google.cloud.bigquery",
        "google.cloud.bigquery_storage_v1",
        "db_dtypes",
        "google.cloud.secretmanager",
    ],
    "trainer": [
        "kfp.dsl.executor_main",
        "components.train.component",
        "components.train.core",
        "components._shared.model",
        "components.evaluate.component",
        "components.evaluate.core",
        "components.compare.component",
        "components.compare.core",
        "components.export.component",
        "components.export.core",
        "tensorflow",
        "keras",
        "tensorflow_serving.apis.prediction_log_pb2",
        "ai_edge_litert.interpreter",
        "sklearn.metrics",
        "mlflow",
        "google.cloud.storage",
        "mlflow.store.artifact.gcs_artifact_repo",
        "fsspec",
        "gcsfs",
        "s3fs",  # s3:// and Kubeflow's minio:// pipeline root (components/_shared/object_store.py)
        "google.cloud.secretmanager",
        "components.train.launch",  # multi-worker training's launcher: Vertex CustomJob, Kubeflow TFJob
        "google.cloud.aiplatform",
        "kubeflow.training",
    ],
    "deploy": [
        "kfp.dsl.executor_main",
        "components.deploy.component",
        "components.deploy.core",
        "components.deploy.vertex",
        "components.deploy.kserve",  # the KServe target: kserve's v1beta1 models, the kubernetes client
        "kserve",
        "kubernetes.client",
        "components.export.core",
        "components.monitor.component",
        "components.monitor.core",
        "components.monitor.outputs",
        "components._shared.launch.kfp",
        "components._shared.launch.vertex",
        "tensorflow",
        "tensorflow_serving.apis.prediction_log_pb2",
        "ai_edge_litert.interpreter",
        "mlflow",
        "google.cloud.aiplatform",
        "google.cloud.storage",
        "evidently",
        "evidently.presets",
        "kfp_server_api",
        "fsspec",
        "gcsfs",
        "s3fs",  # s3:// and Kubeflow's minio:// pipeline root (components/_shared/object_store.py)
        "google.cloud.bigquery",
        "db_dtypes",
        "sklearn.metrics",
        "google.cloud.secretmanager",
    ],
}
# Modules an image must NOT carry (the data steps must not pay for TensorFlow).
ROLE_ABSENT = {"data": ["tensorflow", "keras"], "trainer": [], "deploy": []}

# What each role can do without a network, beyond importing (checked in the fresh virtualenv).
ROLE_CAPABILITIES = {
    "data": """
import fsspec
fsspec.get_filesystem_class("gs")                      # gs:// data URIs (gcsfs)
fsspec.get_filesystem_class("s3")                      # s3:// (s3fs; minio:// goes through it)
from google.cloud.bigquery import _pandas_helpers
_pandas_helpers.verify_pandas_imports()                # bq:// -> DataFrame needs db-dtypes
""",
    "trainer": """
import tensorflow as tf
assert "gs" in tf.io.gfile.get_registered_schemes(), "TensorFlow cannot write gs:// checkpoints"
from mlflow.store.artifact.gcs_artifact_repo import GCSArtifactRepository  # MLflow artifacts on gs://
import google.cloud.storage
""",
    "deploy": """
import fsspec
fsspec.get_filesystem_class("gs")
from google.cloud.bigquery import _pandas_helpers
_pandas_helpers.verify_pandas_imports()
import kfp
assert callable(kfp.Client)
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform
# Parses and validates the compiled template offline, as a monitor-triggered Vertex run would.
aiplatform.PipelineJob(display_name="contract", template_path=TEMPLATE, pipeline_root="gs://bucket/root",
                       project="contract-project", location="us-central1", credentials=AnonymousCredentials())
""",
}


# --------------------------------------------------------------------------- compiled executors


def compiled_executors() -> dict[str, dict]:
    """Component function -> its role, executor command/args and component spec, from compiled/kubeflow."""
    roles = {Images().uri(role): role for role in ROLES}
    found: dict[str, dict] = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "compiled", "kubeflow", "*.yaml"))):
        with open(path) as fh:
            spec = next(yaml.safe_load_all(fh))
        comps = {c["executorLabel"]: c for c in spec["components"].values() if "executorLabel" in c}
        for label, ex in spec["deploymentSpec"]["executors"].items():
            container = ex.get("container")
            if not container:
                continue
            args = container["args"]
            fn = args[args.index("--function_to_execute") + 1]
            found[fn] = {
                "role": roles.get(container["image"]),
                "image": container["image"],
                "command": container["command"],
                "args": args,
                "spec": comps[label],
                "pipeline": os.path.basename(path),
            }
    return found


def executor_input(comp: dict, params: dict, inputs: dict, out_dir: str) -> dict:
    """The ExecutorInput the launcher would pass: defaults filled in, outputs under ``out_dir``."""
    idefs, odefs = comp.get("inputDefinitions", {}), comp.get("outputDefinitions", {})
    declared = idefs.get("parameters", {})
    unknown = set(params) - set(declared)
    assert not unknown, f"contract case sets unknown parameters {sorted(unknown)}"
    values = {}
    for name, d in declared.items():
        if name in params:
            values[name] = params[name]
        elif "defaultValue" in d:
            values[name] = d["defaultValue"]
        elif name in TABLE and TABLE[name].default is not None:
            # Wrappers declare no defaults of their own: the pipeline passes the table's value.
            values[name] = TABLE[name].default
        else:
            assert d.get("isOptional"), f"contract case lacks the required parameter {name!r}"
        # protobuf numbers are doubles; the backend casts NUMBER_INTEGER inputs back to int
        # (so does kfp.local: executor_input_utils.executor_input_to_dict).
        if name in values and d.get("parameterType") == "NUMBER_INTEGER":
            values[name] = int(values[name])
    artifacts = {}
    for name, d in idefs.get("artifacts", {}).items():
        assert name in inputs or d.get("isOptional"), (
            f"contract case lacks the input artifact {name!r}"
        )
        if name in inputs:
            uri, metadata = inputs[name]
            artifacts[name] = {
                "artifacts": [
                    {"name": name, "type": d["artifactType"], "uri": uri, "metadata": metadata}
                ]
            }
    outputs = {
        name: {
            "artifacts": [
                {
                    "name": name,
                    "type": d["artifactType"],
                    "uri": os.path.join(out_dir, "artifacts", name),
                    "metadata": {},
                }
            ]
        }
        for name, d in odefs.get("artifacts", {}).items()
    }
    out_params = {
        name: {"outputFile": os.path.join(out_dir, "parameters", name)}
        for name in odefs.get("parameters", {})
    }
    return {
        "inputs": {"parameterValues": values, "artifacts": artifacts},
        "outputs": {
            "parameters": out_params,
            "artifacts": outputs,
            "outputFile": os.path.join(out_dir, "executor_output.json"),
        },
    }


def top_level_imports(stderr: str) -> list[tuple[str, float]]:
    """(module, cumulative seconds) of each top-level import in ``-X importtime`` output."""
    found = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        parts = line.split("|")
        name = parts[2][1:]
        if not name.startswith(" "):
            found.append((name.strip(), int(parts[1]) / 1e6))
    return found


REPLAY = """
import importlib, sys
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception:
        pass
"""


def cold_start_seconds(
    venv: str, modules: list[str], cwd: str, repeat: int = 2
) -> tuple[float, float]:
    """(wall, CPU) seconds of a fresh interpreter importing ``modules``, best of ``repeat``.

    This is what a pod pays before any work. CPU time (user + system) is reported next to wall
    time because it hardly moves when other processes share the machine.
    """
    import resource

    walls, cpus = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(
            [os.path.join(venv, "bin", "python"), "-c", REPLAY, *modules],
            cwd=cwd,
            env=_env(venv, cwd),
            capture_output=True,
            timeout=RUN_TIMEOUT,
            check=True,
        )
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return round(min(walls), 2), round(min(cpus), 2)


# --------------------------------------------------------------------------- role virtualenvs


def _env(venv: str, home: str) -> dict:
    """A container-like environment: the role's python first on PATH, nothing from this shell."""
    return {
        "PATH": f"{venv}/bin:/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "LANG": "C.UTF-8",
        "TMPDIR": home,
        "PYTHONNOUSERSITE": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "NO_GCE_CHECK": "True",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "CUDA_VISIBLE_DEVICES": "",
    }


def _lock_key(role: str) -> str:
    with open(os.path.join(ROOT, "containers", role, "requirements.lock"), "rb") as fh:
        digest = hashlib.sha256(fh.read() + sys.version.encode()).hexdigest()
    return f"{role}-{digest[:12]}"


@contextlib.contextmanager
def _file_lock(path: str):
    import fcntl

    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _ensure_cache_dir() -> None:
    """Create .cache/ with a .gitignore of its own, so git never sees the venvs or reports."""
    os.makedirs(os.path.join(ROOT, ".cache"), exist_ok=True)
    ignore = os.path.join(ROOT, ".cache", ".gitignore")
    if not os.path.exists(ignore):
        with open(ignore, "w") as fh:
            fh.write("*\n")


def build_role_venv(role: str) -> tuple[str, float]:
    """Create (or reuse) the role's virtualenv from its lock alone; returns (path, seconds spent)."""
    _ensure_cache_dir()
    os.makedirs(CACHE, exist_ok=True)
    venv = os.path.join(CACHE, _lock_key(role))
    t0 = time.perf_counter()
    with _file_lock(venv + ".lock"):
        if os.path.exists(os.path.join(venv, ".complete")):
            return venv, 0.0
        shutil.rmtree(venv, ignore_errors=True)
        for stale in glob.glob(os.path.join(CACHE, f"{role}-*")):  # venvs of older locks
            if stale != venv and os.path.isdir(stale):
                shutil.rmtree(stale, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        py = os.path.join(venv, "bin", "python")
        lock = os.path.join(ROOT, "containers", role, "requirements.lock")
        subprocess.run(
            [
                py,
                "-m",
                "pip",
                "install",
                "-qq",
                "--disable-pip-version-check",
                "--no-cache-dir",
                "--no-deps",
                "--require-hashes",
                "-r",
                lock,
            ],
            check=True,
        )
        subprocess.run([py, "-m", "pip", "check"], check=True)
        open(os.path.join(venv, ".complete"), "w").close()
    return venv, time.perf_counter() - t0


@pytest.fixture(scope="session")
def project_wheel(tmp_path_factory) -> str:
    """This project's wheel, built from a copy of the sources the Dockerfiles copy."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), src / name)
    for pkg in ("components", "pipelines"):
        shutil.copytree(
            os.path.join(ROOT, pkg), src / pkg, ignore=shutil.ignore_patterns("__pycache__")
        )
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(dist),
            str(src),
        ],
        check=True,
    )
    (wheel,) = glob.glob(str(dist / "kfp_tf_gate-*.whl"))
    return wheel


@pytest.fixture(scope="session")
def report():
    data: dict = {"roles": {}, "components": {}}
    yield data
    _ensure_cache_dir()
    with open(REPORT, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)


@pytest.fixture(scope="session")
def role_env(project_wheel, report, tmp_path_factory):
    """role -> path of its ready virtualenv (built once per lock, project wheel fresh per session)."""
    ready: dict[str, str] = {}
    one_at_a_time = os.environ.get("KFP_TF_GATE_ONE_ROLE_VENV") == "1"

    def get(role: str) -> str:
        if role not in ready:
            if one_at_a_time:  # conftest.py orders the tests role by role
                for other in list(ready):
                    shutil.rmtree(ready.pop(other), ignore_errors=True)
            venv, seconds = build_role_venv(role)
            py = os.path.join(venv, "bin", "python")
            subprocess.run(
                [
                    py,
                    "-m",
                    "pip",
                    "install",
                    "-qq",
                    "--disable-pip-version-check",
                    "--no-deps",
                    "--no-index",
                    "--force-reinstall",
                    project_wheel,
                ],
                check=True,
            )
            report["roles"].setdefault(role, {})["venv_build_seconds"] = round(seconds, 1)
            ready[role] = venv
        return ready[role]

    return get


# --------------------------------------------------------------------------- real inputs


def _art(cls, root: str, name: str):
    path = os.path.join(root, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return cls(uri=path, name=name)


@pytest.fixture(scope="session")
def upstream(tmp_path_factory):
    """Every artifact of one training run, produced by the components in the development venv."""
    root = str(tmp_path_factory.mktemp("upstream"))
    with _chdir(root):  # MLflow and friends write relative paths: keep them out of the checkout
        return _upstream(root)


@contextlib.contextmanager
def _chdir(path: str):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _upstream(root: str) -> dict:
    from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Markdown, Metrics, Model

    from components.compare.component import compare_models
    from components.deploy.component import deploy_model
    from components.engineer.component import engineer_features
    from components.evaluate.component import evaluate_model
    from components.export.component import export_model
    from components.ingest.component import ingest_data
    from components.train.component import train_model
    from components.validate.component import champion_reference, validate_data
    from pipelines.data import ID_COLUMN, LABEL, generate_churn

    csv = os.path.join(root, "churn.csv")
    generate_churn(2000, seed=5).to_csv(csv, index=False)
    a = {
        name: _art(cls, root, name)
        for name, cls in {
            "train_data": Dataset,
            "eval_data": Dataset,
            "test_data": Dataset,
            "ingest_info": Artifact,
            "ingest_metrics": Metrics,
            "reference": Artifact,
            "schema": Artifact,
            "anomalies": Artifact,
            "validation_report": HTML,
            "validation_metrics": Metrics,
            "transform_spec": Artifact,
            "model": Model,
            "train_metrics": Metrics,
            "eval_metrics": Metrics,
            "classification_metrics": ClassificationMetrics,
            "evaluation": Artifact,
            "evaluation_report": Markdown,
            "decision": Artifact,
            "decision_report": Markdown,
            "saved_model": Model,
            "tflite_model": Model,
            "export_metrics": Metrics,
            "deployment": Artifact,
            "model_card": Markdown,
            "resolved": Model,
            "predictions": Dataset,
            "prediction_sample": Dataset,
            "prediction_summary": Artifact,
            "prediction_report": HTML,
            "prediction_metrics": Metrics,
        }.items()
    }
    ingest_data.python_func(**with_defaults(ingest_data,
        data_uri=csv,
        label=LABEL,
        train_data=a["train_data"],
        eval_data=a["eval_data"],
        test_data=a["test_data"],
        ingest_info=a["ingest_info"],
        metrics=a["ingest_metrics"],
        id_column=ID_COLUMN,
    ))
    champion_reference.python_func(**with_defaults(champion_reference, reference=a["reference"], model_name=MODEL))
    validate_data.python_func(**with_defaults(validate_data,
        train_data=a["train_data"],
        eval_data=a["eval_data"],
        test_data=a["test_data"],
        ingest_info=a["ingest_info"],
        reference=a["reference"],
        schema=a["schema"],
        anomalies=a["anomalies"],
        report=a["validation_report"],
        metrics=a["validation_metrics"],
        id_column=ID_COLUMN,
    ))
    engineer_features.python_func(**with_defaults(engineer_features,
        train_data=a["train_data"], schema=a["schema"], transform_spec=a["transform_spec"]
    ))
    train_model.python_func(**with_defaults(train_model,
        train_data=a["train_data"],
        eval_data=a["eval_data"],
        transform_spec=a["transform_spec"],
        ingest_info=a["ingest_info"],
        model=a["model"],
        metrics=a["train_metrics"],
        model_name=MODEL,
        epochs=2,
        batch_size=256,
    ))
    evaluate_model.python_func(**with_defaults(evaluate_model,
        model=a["model"],
        test_data=a["test_data"],
        eval_data=a["eval_data"],
        metrics=a["eval_metrics"],
        classification_metrics=a["classification_metrics"],
        evaluation=a["evaluation"],
        report=a["evaluation_report"],
    ))
    compare_models.python_func(**with_defaults(compare_models,
        model=a["model"],
        test_data=a["test_data"],
        evaluation=a["evaluation"],
        decision=a["decision"],
        decision_report=a["decision_report"],
        model_name=MODEL,
        min_auc=0.0,
        max_ece=-1.0,
        max_auc_gap=-1.0,
        bootstrap_samples=50,
    ))
    export_model.python_func(**with_defaults(export_model,
        model=a["model"],
        test_data=a["test_data"],
        saved_model=a["saved_model"],
        tflite_model=a["tflite_model"],
        metrics=a["export_metrics"],
        model_name=MODEL,
    ))
    # A registry whose champion compare re-scores and the monitor compares against.
    from components._shared import registry

    tracking = f"sqlite:///{os.path.join(root, 'registry', 'mlflow.db')}"
    os.makedirs(os.path.join(root, "registry"), exist_ok=True)
    registry.configure(
        tracking, MODEL, artifact_location=os.path.join(root, "registry", "mlartifacts")
    )
    deploy_model.python_func(**with_defaults(deploy_model,
        saved_model=a["saved_model"],
        model=a["model"],
        train_data=a["train_data"],
        schema=a["schema"],
        evaluation=a["evaluation"],
        decision=a["decision"],
        ingest_info=a["ingest_info"],
        deployment=a["deployment"],
        model_card=a["model_card"],
        model_name=MODEL,
        mlflow_tracking_uri=tracking,
        serving_base_dir=os.path.join(root, "registry", "serving"),
    ))
    window = os.path.join(root, "window.csv")
    generate_churn(800, seed=99).to_csv(window, index=False)
    from components.predict.component import predict_table, resolve_model

    resolve_model.python_func(model=a["resolved"], model_name=MODEL, model_version="", model_alias="champion",
                              mlflow_tracking_uri=tracking, require_remote_registry=False)
    predict_table.python_func(model=a["resolved"], predictions=a["predictions"], sample=a["prediction_sample"],
                              summary=a["prediction_summary"], report=a["prediction_report"],
                              metrics=a["prediction_metrics"], data_uri=window, output_uri="", id_column="",
                              anomaly_severity="{}", shard_rows=1_000_000, require_durable_output=False)
    return {
        "root": root,
        "csv": csv,
        "window": window,
        "registry": os.path.join(root, "registry"),
        "artifacts": {k: (v.uri, dict(v.metadata)) for k, v in a.items()},
    }


def _fresh_registry(tmp: str, copy_from: str = "") -> str:
    """An MLflow SQLite store in ``tmp`` (a copy of ``copy_from``'s, champion included, if given)."""
    dest = os.path.join(tmp, "registry")
    if copy_from:
        shutil.copytree(copy_from, dest)
    else:
        os.makedirs(dest)
    return f"sqlite:///{os.path.join(dest, 'mlflow.db')}"


def case_inputs(fn: str, up: dict, tmp: str) -> tuple[dict, dict]:
    """(parameters, input artifacts) of one contract run of component ``fn``."""
    from pipelines.data import ID_COLUMN, LABEL

    a = up["artifacts"]
    pick = lambda *names, **renamed: {
        **{n: a[n] for n in names},
        **{k: a[v] for k, v in renamed.items()},
    }  # noqa: E731
    if fn == "ingest_data":
        return {"data_uri": up["csv"], "label": LABEL, "id_column": ID_COLUMN}, {}
    if fn == "champion_reference":
        return (
            {"model_name": MODEL, "mlflow_tracking_uri": _fresh_registry(tmp, up["registry"])},
            {},
        )
    if fn == "validate_data":
        return (
            {"id_column": ID_COLUMN},
            pick("train_data", "eval_data", "test_data", "ingest_info", "reference"),
        )
    if fn == "drift_report":
        return {"sample_rows": 2000}, pick("train_data", "test_data", "reference", "schema")
    if fn == "engineer_features":
        return {}, pick("train_data", "schema")
    if fn == "train_model":
        return (
            {
                "model_name": MODEL,
                "mlflow_tracking_uri": _fresh_registry(tmp),
                "epochs": 2,
                "batch_size": 256,
                "checkpoint_root": os.path.join(tmp, "checkpoints"),
                "pipeline_run": "contract",
            },
            pick("train_data", "eval_data", "transform_spec", "ingest_info"),
        )
    if fn == "evaluate_model":
        return {}, pick("model", "test_data", "eval_data")
    if fn == "compare_models":
        return (
            {
                "model_name": MODEL,
                "mlflow_tracking_uri": _fresh_registry(tmp, up["registry"]),
                "bootstrap_samples": 50,
            },
            pick("model", "test_data", "evaluation"),
        )
    if fn == "export_model":
        return {"model_name": MODEL}, pick("model", "test_data")
    if fn == "deploy_model":
        return (
            {
                "model_name": MODEL,
                "mlflow_tracking_uri": _fresh_registry(tmp),
                "serving_base_dir": os.path.join(tmp, "serving"),
                "pipeline_run": "contract",
            },
            pick(
                "saved_model",
                "model",
                "train_data",
                "schema",
                "evaluation",
                "decision",
                "ingest_info",
            ),
        )
    if fn == "resolve_model":
        return (
            {
                "model_name": MODEL,
                "model_version": "",
                "model_alias": "champion",
                "mlflow_tracking_uri": _fresh_registry(tmp, up["registry"]),
                "require_remote_registry": False,
            },
            {},
        )
    if fn == "predict_table":
        return (
            {
                "data_uri": up["window"],
                "output_uri": "",
                "id_column": "",
                "anomaly_severity": "{}",
                "shard_rows": 1_000_000,
                "require_durable_output": False,
            },
            pick(model="resolved"),
        )
    if fn == "prediction_drift_report":
        return {"sample_rows": 2000, "seed": 0}, pick(model="resolved", sample="prediction_sample")
    if fn == "monitor_data":
        return (
            {
                **component_defaults(),
                "current_uri": up["window"],
                "model_name": MODEL,
                "mlflow_tracking_uri": _fresh_registry(tmp, up["registry"]),
                "min_rows": 50,
            },
            {},
        )
    raise KeyError(fn)


# Every component of the compiled pipelines, in pipeline order; a light test checks this list
# against compiled/ so a new component cannot skip the contract.
CASES = [
    "ingest_data",
    "champion_reference",
    "validate_data",
    "drift_report",
    "engineer_features",
    "train_model",
    "evaluate_model",
    "compare_models",
    "export_model",
    "deploy_model",
    "monitor_data",
    "resolve_model",
    "predict_table",
    "prediction_drift_report",
]
ROLE_OF = {
    "ingest_data": "data",
    "champion_reference": "data",
    "validate_data": "data",
    "drift_report": "data",
    "engineer_features": "data",
    "train_model": "trainer",
    "evaluate_model": "trainer",
    "compare_models": "trainer",
    "export_model": "trainer",
    "deploy_model": "deploy",
    "monitor_data": "deploy",
    "resolve_model": "trainer",
    "predict_table": "trainer",
    "prediction_drift_report": "data",
}


# --------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("role", list(ROLES))
def test_role_env_has_what_its_components_import(role, role_env, report, tmp_path):
    """Fresh venv from the lock: imports, absent modules, offline capabilities, code from the wheel."""
    venv = role_env(role)
    script = "\n".join(
        [
            "import importlib, importlib.util, os, sys",
            f"for m in {ROLE_IMPORTS[role]!r}: importlib.import_module(m)",
            f"present = [m for m in {ROLE_ABSENT[role]!r} if importlib.util.find_spec(m) is not None]",
            "assert not present, f'the image carries {present}'",
            "import components",
            f"assert components.__file__.startswith({venv!r}), components.__file__",
            f"TEMPLATE = {os.path.join(ROOT, 'compiled', 'vertex', 'training.yaml')!r}",
            ROLE_CAPABILITIES[role],
        ]
    )
    proc = subprocess.run(
        [os.path.join(venv, "bin", "python"), "-c", script],
        cwd=tmp_path,
        env=_env(venv, str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    modules = ["kfp.dsl.executor_main", *ROLE_IMPORTS[role]]
    wall, cpu = cold_start_seconds(venv, modules, str(tmp_path))
    report["roles"].setdefault(role, {}).update(
        {"cold_start_all_modules_wall_seconds": wall, "cold_start_all_modules_cpu_seconds": cpu}
    )


@pytest.mark.parametrize("role", list(ROLES))
def test_role_size_estimate(role, role_env, report):
    """Installed size per distribution (the image's added layer is about this big)."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    venv = role_env(role)
    (site,) = glob.glob(os.path.join(venv, "lib", "python3*", "site-packages"))
    sizes, requires = {}, {}
    for dist in md.distributions(path=[site]):
        name = dist.metadata["Name"].lower().replace("_", "-")
        total = 0
        for f in dist.files or []:
            with contextlib.suppress(OSError):
                total += os.path.getsize(dist.locate_file(f))
        sizes[name] = total
        requires[name] = [Requirement(r) for r in dist.requires or []]
    # Packages the TensorFlow GPU base image already has: tensorflow and its own closure.
    tf_closure, todo = set(), ["tensorflow"] if "tensorflow" in sizes else []
    while todo:
        name = todo.pop()
        if name in tf_closure or name not in sizes:
            continue
        tf_closure.add(name)
        todo += [
            r.name.lower().replace("_", "-")
            for r in requires[name]
            if r.marker is None or r.marker.evaluate({"extra": ""})
        ]
    mb = lambda n: round(n / 2**20, 1)  # noqa: E731
    entry = report["roles"].setdefault(role, {})
    entry["site_packages_mb"] = mb(sum(sizes.values()))
    entry["distributions"] = len(sizes)
    entry["largest_mb"] = {k: mb(v) for k, v in sorted(sizes.items(), key=lambda kv: -kv[1])[:8]}
    if tf_closure:
        entry["tensorflow_closure_mb"] = mb(sum(sizes[n] for n in tf_closure))
        entry["beyond_tensorflow_closure_mb"] = mb(
            sum(v for k, v in sizes.items() if k not in tf_closure)
        )
    if role == "data":
        assert "tensorflow" not in sizes and "keras" not in sizes


@pytest.mark.parametrize("fn", CASES)
def test_component_runs_as_the_launcher_runs_it(fn, role_env, upstream, report, tmp_path):
    executors = compiled_executors()
    if fn not in executors:
        pytest.skip(f"{fn} is not in compiled/kubeflow (not compiled yet)")
    ex = executors[fn]
    assert ex["role"] == ROLE_OF[fn], (
        f"{fn} runs in {ex['image']}, expected the {ROLE_OF[fn]} image"
    )
    venv = role_env(ex["role"])
    params, inputs = case_inputs(fn, upstream, str(tmp_path))
    out_dir = str(tmp_path / "out")
    payload = executor_input(ex["spec"], params, inputs, out_dir)
    args = [json.dumps(payload) if a == "{{$}}" else a for a in ex["args"]]
    env = {**_env(venv, str(tmp_path)), "PYTHONPROFILEIMPORTTIME": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run(
        ex["command"] + args,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    seconds = time.perf_counter() - t0
    log = "\n".join(
        line
        for line in (proc.stdout + proc.stderr).splitlines()
        if not line.startswith("import time:")
    )
    assert proc.returncode == 0, f"{fn} failed in the {ex['role']} env:\n{log[-6000:]}"
    with open(payload["outputs"]["outputFile"]) as fh:
        result = json.load(fh)
    for name, d in ex["spec"].get("outputDefinitions", {}).get("artifacts", {}).items():
        title = d["artifactType"]["schemaTitle"]
        if title in ("system.Metrics", "system.ClassificationMetrics"):
            assert result["artifacts"][name]["artifacts"][0]["metadata"], (
                f"{fn} logged nothing to {name}"
            )
        else:
            assert os.path.exists(os.path.join(out_dir, "artifacts", name)), f"{fn} wrote no {name}"
    for name in ex["spec"].get("outputDefinitions", {}).get("parameters", {}):
        assert name in result.get("parameterValues", {}), f"{fn} returned no {name}"
    imports = top_level_imports(proc.stderr)
    modules = [m for m, _ in imports if m != "ephemeral_component"]
    wall, cpu = cold_start_seconds(venv, modules, str(tmp_path))
    report["components"][fn] = {
        "role": ex["role"],
        "wall_seconds": round(seconds, 1),
        "import_seconds_in_run": round(sum(t for _, t in imports), 2),
        "cold_start_wall_seconds": wall,
        "cold_start_cpu_seconds": cpu,
        "heaviest_imports": {m: round(t, 2) for m, t in sorted(imports, key=lambda mt: -mt[1])[:5]},
    }


def test_print_report(report, capsys):
    """Summary of the measurements (also written to .cache/container-contract.json)."""
    lines = [
        "",
        "role      site-packages MB  beyond TF closure MB  cold start, all role modules: wall s / CPU s",
    ]
    for role, r in report["roles"].items():
        lines.append(
            f"{role:8s}  {r.get('site_packages_mb', '?'):>16}  {r.get('beyond_tensorflow_closure_mb', '-'):>20}"
            f"  {r.get('cold_start_all_modules_wall_seconds', '?'):>8} / {r.get('cold_start_all_modules_cpu_seconds', '?')}"
        )
    lines.append(
        "component             role      run wall s  cold start wall s / CPU s  heaviest imports in the run (s)"
    )
    for fn, r in report["components"].items():
        heavy = ", ".join(f"{m} {t}" for m, t in list(r["heaviest_imports"].items())[:3])
        lines.append(
            f"{fn:20s}  {r['role']:8s}  {r['wall_seconds']:>10}  {r['cold_start_wall_seconds']:>17} / "
            f"{r['cold_start_cpu_seconds']:<5}  {heavy}"
        )
    with capsys.disabled():
        print("\n".join(lines))
