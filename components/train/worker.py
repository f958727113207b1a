"""One replica of multi-worker training: ``python -m components.train.worker --config CONFIG``.

Every replica of a Vertex AI CustomJob or a Kubeflow TFJob runs this with the same config and its
own TF_CONFIG; the interface (config keys, environment, what the chief writes where) is in
``components/train/distributed.py``. Without TF_CONFIG it trains on this machine alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from typing import Optional

from components._shared.errors import ConfigError, PipelineError

logger = logging.getLogger(__name__)

REQUIRED = ("train_path", "eval_path", "model_dir")
KNOWN = (*REQUIRED, "spec", "spec_path", "checkpoint_dir", "result_path", "config", "mlflow_tracking_uri",
         "model_name", "lineage")


def _read_text(uri: str) -> str:
    from components._shared.object_store import filesystem

    fs, path = filesystem(uri)
    try:
        with fs.open(path, "r") as fh:
            return fh.read()
    except FileNotFoundError:
        raise ConfigError(f"the worker config {uri} does not exist") from None


def _write_text(text: str, uri: str) -> None:
    from components._shared import io

    if "://" not in uri or uri.startswith("file://"):
        io.write_text_atomic(text, uri.removeprefix("file://"))
        return
    from components._shared.object_store import filesystem

    fs, path = filesystem(uri)
    with fs.open(path, "w") as fh:
        fh.write(text)


def load_config(uri: str) -> dict:
    """The worker config at ``uri``, checked: one sentence naming what is wrong.

    Raises:
        ConfigError: Not JSON, a required key missing, an unknown key, or no transform spec.
    """
    try:
        cfg = json.loads(_read_text(uri))
    except ValueError as exc:
        raise ConfigError(f"the worker config {uri} is not JSON ({exc})") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"the worker config {uri} must be a JSON object, got {type(cfg).__name__}")
    missing = [k for k in REQUIRED if not cfg.get(k)]
    if missing:
        raise ConfigError(f"the worker config {uri} has no {missing[0]!r}")
    unknown = sorted(set(cfg) - set(KNOWN))
    if unknown:
        raise ConfigError(f"the worker config {uri} has unknown key {unknown[0]!r} (known: {', '.join(KNOWN)})")
    if not cfg.get("spec") and not cfg.get("spec_path"):
        raise ConfigError(f"the worker config {uri} has neither 'spec' nor 'spec_path' (the transform spec)")
    return cfg


def run(config_uri: str, env: Optional[dict] = None) -> dict:
    """Train one replica as the config says; returns the result dict (the chief writes it too)."""
    from components.train.core import TrainConfig, train
    from components.train.distributed import cluster_from_env

    cluster = cluster_from_env(env)  # a bad TF_CONFIG fails before any data is read
    cfg = load_config(config_uri)
    spec = cfg.get("spec") or json.loads(_read_text(cfg["spec_path"]))
    try:
        settings = TrainConfig(**(cfg.get("config") or {}))
    except TypeError as exc:
        raise ConfigError(f"the worker config's 'config' has a field TrainConfig does not know ({exc})") from None
    result = train(cfg["train_path"], cfg["eval_path"], spec, cfg["model_dir"], settings,
                   checkpoint_dir=cfg.get("checkpoint_dir"), mlflow_tracking_uri=cfg.get("mlflow_tracking_uri", ""),
                   model_name=cfg.get("model_name", "model"), lineage=cfg.get("lineage"), cluster=cluster)
    out = dataclasses.asdict(result)
    if (cluster is None or cluster.is_chief) and cfg.get("result_path"):
        _write_text(json.dumps(out, indent=2, default=float), cfg["result_path"])
    return out


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components.train.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="worker config JSON (path or gs://, s3://, minio:// URI)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run(args.config)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
