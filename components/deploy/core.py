"""Deploy: register the version, push it to TF Serving, verify it, then move the alias.

Order matters, so a failure at any step leaves the served model and the champion alias
as they were:
  0. the start-up check (:func:`components.deploy.repair.repair`) finishes or refuses a
     half-done change and refuses a registry that lost the served versions;
  1. register (or find, by the SavedModel's fingerprint) the MLflow model version;
  2. copy the SavedModel to ``<serving_base>/<model>/<version>/`` through a temporary
     folder renamed into place (TF Serving never sees half a version);
  3. load that copy the way TF Serving does and replay its warm-up requests;
  4. one :func:`components.deploy.transition.transition`: the serving record (``serving.json``,
     the truth), then ``models.config`` and the registry aliases derived from it (``champion``,
     ``previous``; ``candidate`` when human approval is required).
Every step is idempotent: a retried deploy of the same SavedModel changes nothing twice.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from typing import Optional

from components._shared import champion as layout
from components._shared import faults, registry
from components._shared.errors import DeployError
from components._shared.names import check_model_name
from components.deploy import serving
from components.deploy.repair import repair
from components.deploy.repair import status as check_state
from components.deploy.serving import CONFIG_FILE, fingerprint, join, push_to_serving
from components.deploy.state import rollback_version
from components.deploy.transition import Target, check_version, mark_failed, read_record, transition

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class DeployResult:
    model_name: str
    version: str
    serving_dir: str
    alias: str
    previous_version: Optional[str]
    reused: bool
    models_config: str
    extra: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- model card


def store_card(client, model_name: str, version: str, run_id: Optional[str], card: str, description: str) -> None:
    """The version's card once the registry has numbered it: the description (``description``, the
    card or its registry-sized form) and the full card as the run artifact ``card/model_card.md``.
    Safe to repeat: both are overwritten with the same text."""
    mv = client.get_model_version(model_name, version)
    if (mv.description or "") != description:
        client.update_model_version(model_name, version, description=description)
    if run_id:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, layout.CARD_FILE)
            with open(path, "w") as fh:
                fh.write(card)
            client.log_artifact(run_id, path, artifact_path=layout.CARD)


# --------------------------------------------------------------------------- registry + serving


def register_version(client, model_name: str, fp: str, artifacts: dict, description: str, tags: dict,
                     training_run: Optional[dict] = None):
    """Register a new model version with its artifacts (or find the one holding this SavedModel).

    With ``training_run`` (``mlflow_run_id`` and ``mlflow_model_uri`` from train's model metadata),
    the artifacts are logged into that training run and the MLflow model train logged there is
    registered: the version loads with ``mlflow.pyfunc`` and its run has the params and metrics.
    Without it (or when that run is not in this registry), a run ``register-<name>`` holds them.
    """
    import mlflow

    existing = registry.find_version_by_tag(client, model_name, "fingerprint", fp)
    if existing is not None:
        logger.info("model %s version %s already holds this SavedModel: reusing it", model_name, existing.version)
        return existing, True
    run_id, model_uri = registry.training_run(client, training_run)
    if run_id:
        registry.log_run_artifacts(client, run_id, {k: v for k, v in artifacts.items() if k != layout.MODEL},
                                   tags={k: str(v) for k, v in tags.items()})
        try:
            client.create_registered_model(model_name)
        except Exception:  # already exists
            pass
        mv = mlflow.register_model(model_uri, model_name, tags={"fingerprint": fp, **{k: str(v) for k, v in tags.items()}})
        client.update_model_version(model_name, mv.version, description=description[:5000])
        return registry.ModelRef(model_name, str(mv.version), run_id, mv.source, dict(mv.tags or {})), False
    with mlflow.start_run(run_name=f"register-{model_name}") as run:
        for dest, local in artifacts.items():
            if local and os.path.isdir(local):
                mlflow.log_artifacts(local, artifact_path=dest)
            elif local and os.path.exists(local):
                mlflow.log_artifact(local, artifact_path=dest)
        mlflow.set_tags({k: str(v) for k, v in tags.items()})
        run_id, artifact_uri = run.info.run_id, run.info.artifact_uri
    try:
        client.create_registered_model(model_name)
    except Exception:  # already exists
        pass
    mv = client.create_model_version(model_name, source=f"{artifact_uri}/{layout.MODEL}", run_id=run_id,
                                     tags={"fingerprint": fp, **{k: str(v) for k, v in tags.items()}},
                                     description=description[:5000])
    return registry.ModelRef(model_name, str(mv.version), run_id, mv.source, dict(mv.tags or {})), False


ANY_CHAMPION = "*"


def _check_champion(client, model_name: str, expected: str, version: str) -> None:
    """Raise unless the champion is still the one compare measured the challenger against.

    ``expected`` is compare's champion version ("" when there was none). Finding ``version``
    itself as champion is fine: an earlier attempt of this same deploy got that far.
    """
    if expected == ANY_CHAMPION:
        return
    current = registry.get_alias(client, model_name, registry.CHAMPION)
    now = current.version if current else ""
    if now not in (str(expected or ""), str(version)):
        was = f"version {expected}" if expected else "no champion"
        raise DeployError(
            f"the champion of {model_name} changed after compare ran (compared with {was}, now version {now}), "
            f"so version {version} was not compared with it and is not promoted; run the pipeline again")


def deploy(
    saved_model_dir: str,
    model_name: str,
    tracking_uri: str,
    serving_base: str,
    artifacts: dict,
    card,
    tags: Optional[dict] = None,
    require_approval: bool = False,
    verify=None,
    before_promote=None,
    expected_champion: str = ANY_CHAMPION,
    training_run: Optional[dict] = None,
) -> DeployResult:
    """Register, push, verify and promote one SavedModel (see the module docstring for the order).

    Args:
        artifacts: Registry artifact folder -> local path (the layout of ``_shared.champion``, as
            :func:`components._shared.champion.stage_artifacts` returns it).
        card: The model card (Markdown) stored as the version's description and as an artifact: a
            text, or ``card(version) -> (card, description)`` called once the registry has numbered
            the version (the description is the card in the registry's size, see
            :func:`components.deploy.card.registry_text`).
        verify: ``verify(path) -> int`` loads a pushed version and replays its warm-up requests;
            defaults to :func:`components._shared.warmup.replay_warmup`.
        before_promote: ``before_promote(version) -> dict`` runs after verification and before
            any alias or serving label moves (e.g. the Vertex AI upload); if it raises, nothing is
            promoted. Not called when approval is required. Its result is in ``DeployResult.extra``.
        expected_champion: The champion version compare measured the challenger against ("" for
            none). If another run or a rollback moved the champion since, nothing is promoted (the
            challenger only beat the old one). ``ANY_CHAMPION`` skips the check.
        training_run: Train's ``mlflow_run_id`` / ``mlflow_model_uri``: register that run's MLflow
            model (see :func:`register_version`).
    """
    check_model_name(model_name)
    if not os.path.exists(os.path.join(saved_model_dir, "saved_model.pb")):
        raise DeployError(f"{saved_model_dir} is not a SavedModel (no saved_model.pb)")
    if verify is None:
        from components._shared.warmup import replay_warmup as verify
    fp = fingerprint(saved_model_dir)
    client = registry.configure(tracking_uri, model_name)
    t = Target(client, serving_base, model_name)
    repair(t)  # before registering anything: a lost registry or a half-done change stops here
    if callable(card):  # written once the version has its number
        ref, reused = register_version(client, model_name, fp, artifacts, "", tags or {}, training_run=training_run)
        text, description = card(ref.version)
        store_card(client, model_name, ref.version, ref.run_id, text, description)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            card_path = os.path.join(tmp, layout.CARD_FILE)
            with open(card_path, "w") as fh:
                fh.write(card)
            ref, reused = register_version(client, model_name, fp, {**artifacts, layout.CARD: card_path}, card,
                                           tags or {}, training_run=training_run)
    version = ref.version
    faults.point("deploy:after-register")
    if serving_base:
        target, created = push_to_serving(saved_model_dir, serving_base, model_name, version)
    else:  # registry-only deploy (e.g. Vertex endpoints): verify the exported copy itself
        target, created = saved_model_dir, False
    faults.point("deploy:after-push")

    def withdraw(why: str) -> None:
        if created:
            serving.remove_version(target)
        mark_failed(t, version, why)

    try:
        checked = check_version(t, version, verify, path=target, retry_failed=True)  # the copy as TF Serving will read it
    except DeployError as exc:
        withdraw(str(exc))
        raise DeployError(str(exc).replace("is not put into service", "was not promoted")) from exc
    faults.point("deploy:after-verify")
    try:
        _check_champion(client, model_name, expected_champion, version)
    except DeployError as exc:
        withdraw(str(exc))
        raise
    extra = {}
    if before_promote is not None and not require_approval:
        try:
            extra = before_promote(version) or {}
        except Exception as exc:
            withdraw(str(exc))
            raise DeployError(f"version {version} of {model_name} was not promoted: {exc}") from exc
    before = read_record(t)
    kind = "candidate" if require_approval else "promote"
    # A candidate is loaded by TF Serving under the "canary" label only; "stable" (what clients
    # get by default) stays on the approved champion until `approve`.
    record = transition(t, kind, checked)
    config = join(serving_base, CONFIG_FILE) if serving_base else ""
    if require_approval:
        return DeployResult(model_name, version, target, registry.CANDIDATE,
                            str(before["stable"]) if before.get("stable") else None, reused, config, extra)
    previous = str(record["previous"]) if record.get("previous") else None
    logger.info("model %s version %s is champion (previous %s); served from %s", model_name, version, previous, target)
    return DeployResult(model_name, version, target, registry.CHAMPION, previous, reused, config, extra)


def _cli_target(model_name: str, tracking_uri: str, serving_base: str) -> Target:
    check_model_name(model_name)
    if not serving_base:
        raise DeployError("rollback and approve need the TF Serving model base (the serving record lives there)")
    return Target(registry.configure(tracking_uri), serving_base, model_name)


def rollback(model_name: str, tracking_uri: str, serving_base: str, to: Optional[int] = None, verify=None) -> dict:
    """Move ``stable`` back: to the recorded ``previous`` version, or to version ``to``.

    The version is checked first (on the serving path, its registered fingerprint, not tagged
    failed, loads and answers its warm-up requests). A second rollback never goes forward again to
    the version just rolled back from: it goes to the stable before, or refuses.
    """
    if verify is None:
        from components._shared.warmup import replay_warmup as verify
    t = _cli_target(model_name, tracking_uri, serving_base)
    checked = repair(t)
    record, finished = checked["record"], checked["finished"]
    if finished and finished.get("change") == "rollback" and to in (None, finished.get("version")):
        # This rollback was interrupted and the start-up check finished it: not a second rollback.
        was = (finished.get("before") or {}).get("stable")
        return _rollback_result(model_name, record, was, serving.version_dir(serving_base, model_name, record["stable"]))
    version = rollback_version(record, model_name, to)
    checked = check_version(t, version, verify, record=record)
    faults.point("rollback:after-verify")
    new = transition(t, "rollback", checked)
    return _rollback_result(model_name, new, record.get("stable"), checked.path)


def _rollback_result(model_name: str, record: dict, was, path: str) -> dict:
    return {"model": model_name, "champion": str(record["stable"]),
            "previous": str(record["previous"]) if record.get("previous") else None,
            "rolled_back_from": str(was) if was else None, "serving_dir": path}


def approve(model_name: str, tracking_uri: str, serving_base: str, verify=None) -> dict:
    """Promote the ``candidate`` (the ``canary`` of a deploy with approval required) to champion,
    after the same checks as a rollback's."""
    if verify is None:
        from components._shared.warmup import replay_warmup as verify
    t = _cli_target(model_name, tracking_uri, serving_base)
    checked = repair(t)
    record, finished = checked["record"], checked["finished"]
    if finished and finished.get("change") == "approve":  # interrupted, then finished by the start-up check
        return {"model": model_name, "champion": str(record["stable"]),
                "previous": str(record["previous"]) if record.get("previous") else None}
    if not record.get("canary"):
        raise DeployError(f"model {model_name!r} has no 'candidate' version awaiting approval")
    checked = check_version(t, record["canary"], verify, record=record)
    new = transition(t, "approve", checked)
    _card_approved(t, str(new["stable"]))
    return {"model": model_name, "champion": str(new["stable"]),
            "previous": str(new["previous"]) if new.get("previous") else None}


def _card_approved(t: Target, version: str) -> None:
    """The approved version's card (registry description and run artifact) says champion, not
    candidate. After the change is committed, so a failure here is a warning, never a failed approve."""
    import datetime

    from components.deploy.card import approved

    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    try:
        mv = t.client.get_model_version(t.model_name, version)
        description = approved(mv.description or "", t.model_name, when)
        full = ""
        if mv.run_id:
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    path = t.client.download_artifacts(mv.run_id, f"{layout.CARD}/{layout.CARD_FILE}", tmp)
                    with open(path) as fh:
                        full = approved(fh.read(), t.model_name, when)
                except Exception:  # a version registered without the card artifact: the description only
                    full = ""
        if description != (mv.description or "") or full:
            store_card(t.client, t.model_name, version, mv.run_id if full else None, full, description)
    except Exception as exc:
        logger.warning("version %s of %s is champion, but its model card still says candidate: %s",
                       version, t.model_name, exc)


def status(model_name: str, tracking_uri: str, serving_base: str, fix: bool = False) -> dict:
    """The serving record, the registry aliases and models.config, and whether they agree;
    with ``fix``, run the start-up check first (see :mod:`components.deploy.repair`)."""
    t = _cli_target(model_name, tracking_uri, serving_base)
    done = repair(t) if fix else {"actions": [], "warnings": []}
    return dict(check_state(t), repaired=done["actions"], warnings=done["warnings"])


def code_version() -> str:
    """This package's version (the one installed in the image), or the source tree's."""
    from importlib import metadata

    try:
        return metadata.version("kfp-tf-gate")
    except metadata.PackageNotFoundError:
        from components._shared.images import VERSION

        return VERSION


def training_run_info(tracking_uri: str, model_metadata: dict) -> dict:
    """The training run named in train's model metadata: ``run_id``, ``params`` (its MLflow params,
    the hyperparameters) and ``url`` (the MLflow UI page, when the tracking URI is http(s)).
    Without a reachable run: the metadata's own figures (device, epochs run) as params."""
    meta = dict(model_metadata or {})
    own = {k: v for k, v in meta.items() if k in ("device", "epochs_run", "framework")}
    run_id = meta.get("mlflow_run_id") or ""
    if not run_id:
        return {"run_id": "", "params": own, "url": ""}
    try:
        run = registry.configure(tracking_uri).get_run(run_id)
    except Exception as exc:  # tracked elsewhere or deleted: the card says what it knows
        logger.warning("training run %s is not readable from %s (%s): the card has no hyperparameters from it",
                       run_id, tracking_uri, exc)
        return {"run_id": run_id, "params": own, "url": ""}
    params = {**own, **dict(run.data.params or {})}
    url = ""
    if tracking_uri.startswith(("http://", "https://")):
        url = f"{tracking_uri.rstrip('/')}/#/experiments/{run.info.experiment_id}/runs/{run_id}"
    return {"run_id": run_id, "params": params, "url": url}


def deploy_run(
    saved_model_dir: str,
    model_dir: str,
    train_data_path: str,
    schema: dict,
    evaluation: dict,
    decision: dict,
    ingest_info: dict,
    model_name: str,
    tracking_uri: str,
    serving_base: str,
    model_metadata: Optional[dict] = None,
    saved_model_uri: str = "",
    pipeline_run: str = "",
    image: str = "local",
    require_approval: bool = False,
    vertex=None,
    verify=None,
    export_metrics: Optional[dict] = None,
    card_fields: Optional[dict] = None,
    kserve=None,
) -> tuple[DeployResult, str]:
    """Deploy what one pipeline run produced: the registry layout, the model card, then :func:`deploy`.

    Args:
        schema, evaluation, decision, ingest_info: The validate, evaluate, compare and ingest results.
        model_metadata: The trained model artifact's metadata (``mlflow_run_id``, ``device``, ...).
        saved_model_uri: Where the SavedModel lives for Vertex AI (its artifact URI).
        image: The trainer image, for the card's lineage.
        vertex: A :class:`components.deploy.vertex.VertexTarget`; the version is uploaded (and
            deployed to its endpoint) before any alias moves, so a Vertex failure promotes nothing.
        export_metrics: Export's figures (TFLite quantization, sizes, differences) for the card.
        card_fields: The user's card fields (:func:`components.deploy.card.load_fields`).
        kserve: A :class:`components.deploy.kserve.KServeConfig`; after the version is pushed and
            verified, and before any alias or serving label moves, it is published for KServe and the
            InferenceService is created or patched and Ready (else nothing is promoted).

    Returns:
        (the deploy result, the model card with the registered version number)
    """
    from components._shared.scoring import model_spec
    from components._shared.task import task_of
    from components.deploy.card import model_card, registry_limit, registry_text

    meta = dict(model_metadata or {})
    spec = model_spec(model_dir)
    trained = training_run_info(tracking_uri, meta)
    lineage = {"training_run_id": trained["run_id"], "training_run_url": trained["url"], "pipeline_run": pipeline_run,
               "image": image, "code_version": code_version(), "saved_model_uri": saved_model_uri}
    if vertex is not None:
        lineage["vertex_note"] = (f"uploaded as a version of the Vertex AI model `{model_name}` labelled "
                                  f"fingerprint={fingerprint(saved_model_dir)[:12]}...; Vertex numbers its versions "
                                  "itself, so its version id may differ from this one")
    alias = registry.CANDIDATE if require_approval else registry.CHAMPION
    rendered = {}

    def card(version: str) -> tuple[str, str]:
        """The card and its registry description, with the number the registry gave the version."""
        if version not in rendered:
            kw = dict(ingest=ingest_info, schema=schema, spec=spec, params=trained["params"], evaluation=evaluation,
                      decision=decision, export=export_metrics or {}, lineage=lineage, fields=card_fields or {})
            full = model_card(model_name, version, alias, **kw)
            limit = registry_limit(tracking_uri)
            short = model_card(model_name, version, alias, compact=True, **kw) if limit else ""
            rendered[version] = full, registry_text(full, short, limit)
        return rendered[version]

    task = task_of(spec)
    tags = {"pipeline_run": pipeline_run, "data_hash": ingest_info["content_hash"], "task": task.name}
    if ingest_info.get("split_rule"):  # what a later compare checks first (champion.Champion.split_rule)
        tags["split_rule"] = ingest_info["split_rule"]
    primary = (evaluation.get("metrics") or {}).get(task.primary)
    if isinstance(primary, (int, float)):
        tags[task.primary] = f"{primary:.4f}"
    before_promote = None
    if vertex is not None:
        from components.deploy.vertex import upload_and_deploy

        def before_promote(version):
            return {"vertex": upload_and_deploy(vertex, model_name, saved_model_uri, fingerprint(saved_model_dir),
                                                card(version)[1])}

    if kserve is not None:
        before_promote = _with_kserve(kserve, before_promote, saved_model_dir, serving_base, model_name)

    with tempfile.TemporaryDirectory(prefix="deploy-") as work:
        artifacts = layout.stage_artifacts(work, model_dir, saved_model_dir, schema, train_data_path,
                                           evaluation, decision, ingest_info)
        result = deploy(saved_model_dir, model_name, tracking_uri, serving_base, artifacts=artifacts, card=card,
                        tags=tags, require_approval=require_approval, before_promote=before_promote, verify=verify,
                        expected_champion=decision.get("champion_version") or "", training_run=meta)
    return result, card(result.version)[0]


def _with_kserve(cfg, before_promote, saved_model_dir: str, serving_base: str, model_name: str):
    """``before_promote`` followed by the KServe apply (checked now, before anything is registered)."""
    from components._shared.errors import ConfigError
    from components.deploy import kserve

    if not serving_base:
        raise ConfigError("a KServe deploy needs a serving base (gs://, s3:// or a mounted volume) to publish versions to")
    kserve.check(cfg)
    kserve.service_name(model_name, cfg)
    kserve.storage_uri(cfg, serving_base, model_name, 1)

    def hook(version):
        extra = before_promote(version) if before_promote is not None else {}
        _, created = kserve.publish(saved_model_dir, serving_base, model_name, version)
        try:
            applied = kserve.apply(cfg, model_name, kserve.storage_uri(cfg, serving_base, model_name, version), version)
        except Exception:
            if created:  # the service does not serve it (the apply was undone): take the copy back
                kserve.withdraw(serving_base, model_name, version)
            raise
        return {**(extra or {}), "kserve": applied}

    return hook


def find_deployment(tracking_uri: str, model_name: str, saved_model_dir: str, serving_base: str) -> Optional[dict]:
    """What deploy did with this SavedModel, read back from the registry (its fingerprint tag).

    Returns:
        ``version``, ``alias`` and ``serving_dir`` as in :class:`DeployResult`, or None when the
        SavedModel was not registered or its deploy did not promote it.
    """
    if not (tracking_uri and saved_model_dir and os.path.isdir(saved_model_dir)):
        return None
    client = registry.configure(tracking_uri)
    ref = registry.find_version_by_tag(client, model_name, "fingerprint", fingerprint(saved_model_dir))
    status = (ref.tags.get("deploy_status") if ref else None) or ""
    alias = {"promoted": registry.CHAMPION, "candidate": registry.CANDIDATE}.get(status)
    if alias is None:
        return None
    served = serving.version_dir(serving_base, model_name, ref.version) if serving_base else saved_model_dir
    return {"version": ref.version, "alias": alias, "serving_dir": served}
