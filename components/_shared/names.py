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
