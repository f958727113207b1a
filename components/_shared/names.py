"""Names that become folders, URLs and config entries: checked once, before anything runs.

A model name is the MLflow registered model, the TF Serving model (``<base>/<name>/``, a
``name: "..."`` entry of the shared ``models.config``, the ``/v1/models/<name>`` URL), the
experiment ``kfp-tf-gate/<name>`` and the monitor's report folder. So it must be a plain path
segment that needs no quoting anywhere: letters, digits, ``.``, ``_`` and ``-``, starting with a
letter or digit, at most 63 characters, and not containing ``..``.
"""

from __future__ import annotations

import os
import posixpath
import re

from components._shared.errors import ConfigError

MAX_LENGTH = 63
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def model_name_problem(name) -> str | None:
    """Why ``name`` cannot be a model name, or None when it can."""
    if not isinstance(name, str) or not name:
        return "it is empty"
    if len(name) > MAX_LENGTH:
        return f"it is {len(name)} characters long (at most {MAX_LENGTH})"
    if ".." in name:
        return "it contains '..'"
    if not _MODEL_NAME.match(name):
        return "it may hold only letters, digits, '.', '_' and '-', starting with a letter or digit"
    return None


def check_model_name(name) -> str:
    """Return ``name`` if it is a valid model name.

    Raises:
        ConfigError: One sentence saying why it is not.
    """
    why = model_name_problem(name)
    if why:
        raise ConfigError(f"invalid model name {name!r}: {why}")
    return name


def path_under(root: str, *parts: str) -> str:
    """``root/part/...`` (absolute for a local root), refused when it would leave ``root``.

    For every path built from a name (a report folder, a run folder, a served model): even a
    name that slipped past :func:`check_model_name` cannot write outside its root. The check is
    lexical (``..``, absolute parts), so a symlink the user put inside ``root`` is followed.
    Object-store roots (``gs://bucket/base``) are checked the same way.

    Raises:
        ConfigError: The path would leave ``root``.
    """
    scheme, sep, rest = root.partition("://")
    if sep:  # gs://bucket/base: check the part after the scheme with POSIX rules
        base = posixpath.normpath("/" + rest)
        path = posixpath.normpath(posixpath.join(base, *parts))
        inside = path == base or path.startswith(base.rstrip("/") + "/")
        joined = f"{scheme}://{path.lstrip('/')}"
    else:
        base = os.path.normpath(os.path.abspath(root))
        path = os.path.normpath(os.path.join(base, *parts))
        inside = path == base or path.startswith(base.rstrip(os.sep) + os.sep)
        joined = path
    if not inside:
        raise ConfigError(f"the path {'/'.join(str(p) for p in parts)!r} would leave its root {root}")
    return joined


MODEL_SUFFIX = "-model"
FALLBACK_MODEL_NAME = "model"  # when nothing of the data's name survives sanitizing
# Suffixes of table files, stripped from a file's name ("sales.csv.gz" -> "sales").
_TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq", ".json", ".jsonl", ".gz", ".bz2", ".zip",
                   ".xz", ".zst", ".snappy")
_GLOB = re.compile(r"[*?\[]")


def model_name_from_data(data_uri: str) -> tuple[str, str]:
    """The default model name for a table: ``<stem>-model``, and where the stem came from.

    The stem is the file name without its table suffixes (``sales.csv`` -> ``sales``), a folder's
    name (a folder of shards, or the folder of a ``*.parquet`` pattern), a BigQuery table's name
    (``bq://project.dataset.table`` -> ``table``) or a ``gs://`` object's stem. It is lower-cased
    (two names that differ only in case would share a folder on a case-insensitive file system),
    runs of characters a name cannot hold become one ``-``, and it is cut so that the name passes
    :func:`check_model_name`. The embedded ``churn.csv`` gives ``churn-model``.

    Returns:
        (name, source): source is "file", "folder" or "table", for saying where the name came from.
    """
    text = str(data_uri).strip()
    scheme, sep, rest = text.partition("://")
    if sep and scheme.lower() == "bq":
        stem, source = rest.rstrip("/").replace(":", ".").split(".")[-1], "table"
    else:
        path = rest if sep else os.path.abspath(text)  # "." names the current folder
        parts = [p for p in re.split(r"[/\\]", path) if p not in ("", ".")]
        is_dir = text.endswith(("/", "\\")) or (not sep and os.path.isdir(path))
        while parts and _GLOB.search(parts[-1]):  # gs://b/data/*.parquet: the folder names the table
            parts.pop()
            is_dir = True
        stem, source = (parts[-1] if parts else ""), "folder" if is_dir else "file"
        if not is_dir:
            while stem.lower().endswith(_TABLE_SUFFIXES) and "." in stem[1:]:
                stem = stem[: stem.rfind(".")]
    stem = re.sub(r"[^a-z0-9_]+", "-", stem.lower()).strip("-_")
    stem = stem[: MAX_LENGTH - len(MODEL_SUFFIX)].rstrip("-_")
    name = f"{stem}{MODEL_SUFFIX}" if stem else FALLBACK_MODEL_NAME
    return check_model_name(name), source
