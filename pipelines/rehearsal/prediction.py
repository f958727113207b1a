"""``rehearse --pipeline prediction``: run ``compiled/<target>/prediction.yaml`` as a cluster would.

The same machinery as the training rehearsal (``runner``): kfp.local's orchestrator over the
compiled file, every attempt an isolated pod behind the launcher emulation, the pipeline root on
the GCS emulator. The registry is the one the training rehearsals of the same runs dir built:
``Services`` on ``<runs-dir>/rehearsal`` restarts the MLflow server on the same stores (and the
bucket keeps the model artifacts), so the champion a training rehearsal promoted is the one scored.
The table is uploaded to ``gs://<bucket>/data/<run>/``; the predictions go to ``output_uri``,
by default ``gs://<bucket>/predictions/<run>`` (Parquet shards, ``_SUCCESS`` last).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from typing import Optional

from components._shared.errors import PipelineError
from components._shared.params import PARAMS
from pipelines.rehearsal import platform as platform_mod
from pipelines.rehearsal.launcher import Context
from pipelines.rehearsal.runner import (
    TARGETS,
    Services,
    _write_facts,
    execute_compiled,
    mlflow_auth_route,
    write_secret,
)
from pipelines.rehearsal.services import PASSWORD_KEY, SECRET_NAME, USER_KEY

PREDICT_TASK = "predict-table"


def compiled_prediction_file(target: str) -> str:
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(repo, "compiled", target, "prediction.yaml")


def rehearse_prediction(
    target: str,
    data: str,
    runs_dir: str = "runs",
    model_name: str = PARAMS.model_name,
    output_uri: Optional[str] = None,
    params: Optional[dict] = None,
    run_id: Optional[str] = None,
    services: Optional[Services] = None,
    backoff_scale: float = 1.0,
    keep_sandboxes: bool = False,
    pipeline_file: Optional[str] = None,
    quiet: bool = True,
) -> dict:
    """Score ``data`` with the compiled prediction pipeline against a training rehearsal's registry.

    Args:
        data: Local CSV/Parquet file or folder (uploaded to the bucket), or a ``gs://`` URI on the emulator.
        output_uri: Where predictions go (default ``gs://<bucket>/predictions/<run>``).
        params: Other pipeline parameters (``model_version``, ``model_alias``, ``id_column``, ...).
        services: Running stand-ins (tests share one set); by default started on ``<runs_dir>/rehearsal``,
            which must hold an earlier training rehearsal's registry.

    Returns the predict task's summary (rows, output, model_name, model_version, ...) plus the run's
    facts; also written to ``<runs_dir>/<run>/summary.json``.

    Raises:
        PipelineError: Bad input, no earlier training rehearsal, or a failed task (its sentence).
    """
    from components._shared import io
    from pipelines.local import new_run_id

    if target not in TARGETS:
        raise PipelineError(f"unknown target {target!r}: expected one of {', '.join(TARGETS)}")
    if "://" not in data:
        io.list_shards(data)  # a path that does not exist fails here, before any service starts
    runs_dir = os.path.abspath(runs_dir)
    rehearsal_dir = os.path.join(runs_dir, "rehearsal")
    run_id = run_id or new_run_id().replace("run-", "predict-", 1)
    run_dir = os.path.join(runs_dir, run_id)
    local_root = os.path.join(run_dir, "pipeline_root")
    log_path = os.path.join(run_dir, "pipeline.log")
    pipeline_file = pipeline_file or compiled_prediction_file(target)
    pipeline = platform_mod.load(pipeline_file)
    auth = mlflow_auth_route(pipeline)
    if services is None and not os.path.isdir(os.path.join(rehearsal_dir, "mlflow" if auth else "mlflow-open")):
        raise PipelineError(f"{runs_dir} holds no {target} training rehearsal, whose registry a prediction "
                            f"rehearsal scores with: run `python -m pipelines rehearse --target {target} "
                            f"--runs-dir {runs_dir}` first")
    os.makedirs(local_root, exist_ok=True)

    with contextlib.ExitStack() as stack:
        if services is None:
            services = stack.enter_context(Services(rehearsal_dir, mlflow_auth=auth))
        if services.mlflow_auth:
            write_secret(rehearsal_dir, SECRET_NAME, {USER_KEY: services.creds[USER_KEY],
                                                       PASSWORD_KEY: services.creds[PASSWORD_KEY]})
        store = services.store
        gcs_root = f"gs://{services.bucket}/pipeline-root/{run_id}"
        if "://" in data:
            data_uri = data
        else:
            data_uri = f"gs://{services.bucket}/data/{run_id}/{os.path.basename(os.path.normpath(data))}"
            store.upload_tree(os.path.abspath(data), data_uri)
        arguments = {
            "data_uri": data_uri,
            "output_uri": output_uri or f"gs://{services.bucket}/predictions/{run_id}",
            "model_name": model_name,
            "mlflow_tracking_uri": services.mlflow.url,
            **(params or {}),
        }
        unknown = sorted(set(arguments) - set(pipeline.parameters()))
        if unknown:
            raise PipelineError(f"{pipeline_file} has no parameter {', '.join(unknown)}")
        pipeline = platform_mod.load(pipeline_file, arguments)
        ctx = Context(pipeline=pipeline, rehearsal_dir=rehearsal_dir, run_dir=run_dir,
                      local_root=local_root, gcs_root=gcs_root, store=store,
                      extra_env={"STORAGE_EMULATOR_HOST": store.url}, keep_sandboxes=keep_sandboxes)
        started = time.time()
        execute_compiled(ctx, pipeline_file, arguments, services, target, run_id, log_path, quiet, backoff_scale)
        downloaded = store.download_tree(gcs_root, local_root)
        outputs = next((r.get("outputs") or {} for r in reversed(ctx.records)
                        if r["task"] == PREDICT_TASK and r.get("status") == "SUCCESS"), {})
        summary_uri = (outputs.get("summary") or {}).get("uri", "")
        if not summary_uri.startswith(gcs_root + "/"):
            raise PipelineError(f"the {PREDICT_TASK} task declared no summary in the pipeline root "
                                f"(rehearsal {run_id}; log: {log_path})")
        with open(os.path.join(local_root, *summary_uri[len(gcs_root) + 1:].split("/"))) as fh:
            summary = json.load(fh)
        summary.update({
            "run_id": run_id, "run_dir": run_dir, "log": log_path, "pipeline": "prediction",
            "mlflow_tracking_uri": services.mlflow.url, "wall_seconds": round(time.time() - started, 2),
            "target": target,
            "rehearsal": {**_write_facts(run_dir, ctx, pipeline, services, target, arguments, gcs_root),
                          "objects_read_back": downloaded},
        })
    io.write_json(summary, os.path.join(run_dir, "summary.json"))
    return summary


def cmd(args) -> int:
    from pipelines.predict import format_summary

    if not args.data:
        raise SystemExit("error: --data is required with --pipeline prediction")
    params = {k: v for k, v in (("model_version", args.version), ("model_alias", args.alias),
                                ("id_column", args.id_column)) if v}
    summary = rehearse_prediction(args.target, args.data, runs_dir=args.runs_dir, model_name=args.model_name,
                                  output_uri=args.out, params=params, backoff_scale=args.backoff_scale,
                                  keep_sandboxes=args.keep_sandboxes, pipeline_file=args.pipeline_file,
                                  quiet=not args.verbose)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(format_summary(summary))
        facts = summary["rehearsal"]
        print(f"  rehearsed  {facts['pipeline_file']} (sha256 {facts['pipeline_sha256'][:12]}) as {args.target}; "
              f"pipeline root {facts['pipeline_root']}; details {os.path.join(summary['run_dir'], 'rehearsal.json')}")
    return 0
