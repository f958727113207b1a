"""The compiled pipeline a run starts from, the run's parameters and its name.

A pipeline reference is a compiled package (a path, ``file://``, ``gs://`` or ``https://`` URI)
or, on Kubeflow, the name of an uploaded pipeline. Parameters are checked against the
package's PipelineSpec when there is one, so a typo fails before anything starts.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import tempfile
from typing import Any, List, Optional

from components._shared.errors import ConfigError

TRAINING_PIPELINE = "kfp-tf-gate-training"
PIPELINE_SUFFIXES = (".yaml", ".yml", ".json", ".zip", ".tar.gz", ".tgz")


# --------------------------------------------------------------------------- the package


def is_pipeline_file(ref: str) -> bool:
    """A compiled package (path or URI) rather than the name of an uploaded KFP pipeline."""
    return "/" in ref or ref.lower().endswith(PIPELINE_SUFFIXES)


def fetch_pipeline_file(ref: str) -> str:
    """A local path of the compiled pipeline ``ref`` (downloads gs:// and https:// packages)."""
    if "://" not in ref or ref.startswith("file://"):
        path = ref[len("file://") :] if ref.startswith("file://") else ref
        if not os.path.isfile(path):
            raise ConfigError(
                f"the compiled pipeline {ref} does not exist (run python -m pipelines compile)"
            )
        return path
    suffix = next((s for s in PIPELINE_SUFFIXES if ref.lower().endswith(s)), ".yaml")
    fd, local = tempfile.mkstemp(suffix=suffix, prefix="pipeline-")
    os.close(fd)
    try:
        if ref.startswith(("http://", "https://")):
            import urllib.request

            with urllib.request.urlopen(ref, timeout=60) as resp, open(local, "wb") as out:
                out.write(resp.read())
        else:
            from components._shared.object_store import open_file  # gs://, s3://, minio://

            with open_file(ref, "rb") as src, open(local, "wb") as out:
                out.write(src.read())
    except Exception as exc:
        raise ConfigError(f"cannot download the compiled pipeline {ref}: {exc}") from exc
    return local


def pipeline_spec(path: str) -> dict:
    """The PipelineSpec (first YAML document) of a compiled pipeline file."""
    import yaml

    try:
        with open(path) as fh:
            docs = [d for d in yaml.safe_load_all(fh) if d]
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path} is not a compiled pipeline: {exc}") from exc
    if not docs or "root" not in docs[0]:
        raise ConfigError(f"{path} is not a compiled pipeline (no PipelineSpec)")
    return docs[0]


# --------------------------------------------------------------------------- parameters

def pipeline_parameters(spec: Optional[dict], auto: dict, user: dict) -> dict:
    """Arguments of a run: derived ``auto`` values the pipeline has, plus every ``user`` value.

    With a spec, a ``user`` name the pipeline does not declare is an error, derived names it
    does not declare are dropped, values are cast to the declared types (a list stays a list, a
    command-line "64,32" or "[64, 32]" for a LIST parameter becomes one) and missing required
    parameters are reported.
    """
    from components._shared.values import SPEC_TYPES, expected, parse

    if spec is None:
        return {**auto, **user}
    declared = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    unknown = sorted(set(user) - set(declared))
    if unknown:
        raise ConfigError(
            f"the training pipeline has no parameter {unknown[0]!r} "
            f"(it has: {', '.join(sorted(declared))})"
        )
    out = {}
    for name, value in {**{k: v for k, v in auto.items() if k in declared}, **user}.items():
        kind = declared[name].get("parameterType", "STRING")
        # A LIST whose default holds whole numbers (hidden_units: [64.0, 32.0]) takes whole numbers.
        default = declared[name].get("defaultValue")
        numbers = kind == "LIST" and default and all(
            isinstance(v, (int, float)) and float(v).is_integer() for v in default
        )
        try:
            out[name] = parse(value, List[int] if numbers else SPEC_TYPES.get(kind, object))
        except ValueError as exc:
            raise ConfigError(
                f"the pipeline parameter {name!r} must be {kind} ({expected(SPEC_TYPES.get(kind))}), "
                f"got {value!r}"
            ) from exc
    required = [
        n
        for n, d in declared.items()
        if "defaultValue" not in d and not d.get("isOptional") and n not in out
    ]
    if required:
        raise ConfigError(f"the training pipeline needs the parameter {required[0]!r}")
    return out


def coerce(value: Any) -> Any:
    """A --param string as the number, boolean, JSON list or JSON object it spells (no spec to read
    the type from)."""
    if not isinstance(value, str):
        return value
    if value.strip().startswith(("[", "{")):
        try:
            return json.loads(value)
        except ValueError:
            pass
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value.lower() == "true" if value.lower() in ("true", "false") else value


def parse_params(items: list) -> dict:
    """``["name=value", ...]`` (repeatable --param flags) -> dict of strings."""
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--param expects NAME=VALUE, got {item!r}")
        out[name.strip()] = value.strip()
    return out


def parse_json_params(value: Any) -> dict:
    """Pipeline parameters (a component's ``training_parameters``): a dict, kept as typed as it is, or a
    deprecated JSON-object string ("" is {})."""
    from components._shared.values import json_object

    return json_object(value, "training_parameters")


def retrain_arguments(data_uri: str, schema: dict, model_name: str, tracking_uri: str) -> dict:
    """Pipeline arguments of a retraining run on ``data_uri`` derived from the champion's schema."""
    auto = {"data_uri": data_uri, "label": schema.get("label") or "", "model_name": model_name}
    if schema.get("positive_label") not in (None, ""):
        auto["positive_label"] = str(schema["positive_label"])
    ids = [
        c
        for c, e in schema.get("columns", {}).items()
        if e.get("reason") == "the configured id column"
    ]
    if ids:
        auto["id_column"] = ids[0]
    # Only a tracking server the cluster can reach; a local SQLite file means nothing there.
    if tracking_uri and tracking_uri.split(":", 1)[0] in ("http", "https", "databricks"):
        auto["mlflow_tracking_uri"] = tracking_uri
    return auto


# --------------------------------------------------------------------------- names


def run_name(model_name: str, key: str) -> str:
    """The display name of the retraining run a window (dedupe ``key``) starts."""
    return f"retrain-{model_name}-{key[:12]}"


def vertex_job_id(model_name: str, key: str) -> str:
    """A deterministic Vertex job id (``[a-z][-a-z0-9]{0,127}``): the same window, the same job."""
    slug = re.sub(r"[^a-z0-9-]+", "-", model_name.lower()).strip("-")[:80] or "model"
    return f"retrain-{slug}-{key[:16]}"


def timestamped(name: str) -> str:
    return f"{name} {datetime.datetime.now().strftime('%Y-%m-%d %H-%M-%S')}"


def first_line(text: Any) -> str:
    """The first line of a server's error text (the ``message`` of a JSON body), at most 200 chars."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = str(text or "").strip()
    try:
        doc = json.loads(text)
        text = doc.get("message") or doc.get("error") or text
    except (ValueError, AttributeError):
        pass
    return text.splitlines()[0][:200] if text else ""
