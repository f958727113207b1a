"""Typed values of pipeline parameters: lists, dicts and optional gates.

The pipelines declare lists as ``list`` and dicts as ``dict`` parameters, so a run form shows
``[64, 32]`` and ``{"unseen_categories": "blocking"}``. The cores also take the encoded strings
older calls pass (``"64,32"``, ``'{"a": "b"}'``) and a negative gate for "disabled"; both are
deprecated. Through a pipeline, numbers in a list arrive as floats (protobuf has one number type),
so ``[64.0, 32.0]`` is read as ``[64, 32]``.

``text`` writes a value for people (MLflow params, the model card): ``64,32``, never ``[64, 32]``.
Standard library only: wrappers import it inside their bodies, the CLI before anything runs.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from components._shared.errors import ConfigError


def list_items(value: Any, name: str) -> list:
    """A list value, or a deprecated string: JSON list or comma-separated."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise ConfigError(f"{name} is not a JSON list: {exc}") from None
        else:
            return [c.strip() for c in text.split(",") if c.strip()]
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{name} must be a list, got {value!r}")
    return list(value)


def str_list(value: Any, name: str = "value") -> list:
    """``["a", "b"]``, ``("a",)``, or deprecated ``"a, b"`` -> ``["a", "b"]``; None or empty -> ``[]``."""
    out = []
    for item in list_items(value, name):
        if not isinstance(item, (str, int, float)) or isinstance(item, bool):
            raise ConfigError(f"{name} must be a list of names, got the item {item!r}")
        text = str(item).strip()
        if text:
            out.append(text)
    return out


def int_list(value: Any, name: str = "value") -> list:
    """``[64, 32]``, ``[64.0, 32.0]`` (through a pipeline), or deprecated ``"64,32"`` -> ``[64, 32]``."""
    out = []
    for item in list_items(value, name):
        try:
            number = float(item)
        except (TypeError, ValueError):
            number = float("nan")
        if isinstance(item, bool) or not number.is_integer():
            raise ConfigError(f"{name} must be a list of whole numbers, got the item {item!r}")
        out.append(int(number))
    return out


def json_object(value: Any, name: str = "value") -> dict:
    """A dict, or a deprecated JSON-object string (``""`` is ``{}``)."""
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value.strip() or "{}")
        except ValueError as exc:
            raise ConfigError(f"{name} is not a JSON object: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a JSON object (a dict), got {value!r}")
    return dict(value)


def gate(value: Optional[float]) -> Optional[float]:
    """A promotion gate: None is disabled; a negative value too (deprecated pipeline form)."""
    if value is None:
        return None
    value = float(value)
    return None if value < 0 else value


def text(value: Any) -> str:
    """A parameter value for people: lists comma-separated, dicts as JSON, None as "none"."""
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return ",".join(text(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


# kfp's parameter types (a compiled PipelineSpec's ``parameterType``) as Python types.
SPEC_TYPES = {"STRING": str, "NUMBER_INTEGER": int, "NUMBER_DOUBLE": float, "BOOLEAN": bool, "LIST": list,
              "STRUCT": dict}
_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def expected(kind: Any) -> str:
    """What a value of ``kind`` looks like, for an error sentence."""
    import typing

    origin, args = typing.get_origin(kind) or kind, typing.get_args(kind)
    if origin is list:
        item = "whole numbers" if args and args[0] is int else "values"
        return f"a list of {item} (comma-separated or a JSON list)"
    return {dict: "a JSON object", bool: "true or false", int: "a whole number", float: "a number"}.get(
        origin, "a string")


def parse(value: Any, kind: Any, optional: bool = False) -> Any:
    """``value`` (a command-line string, or already typed) as the declared ``kind``: str, int, float,
    bool, list / ``List[X]`` (comma-separated or a JSON list), dict (a JSON object); with ``optional``,
    "none" or "" is None.

    Raises:
        ValueError: The value is not of that kind (the message is :func:`expected`).
    """
    import typing

    origin, args = typing.get_origin(kind) or kind, typing.get_args(kind)
    if optional and (value is None or (isinstance(value, str) and value.strip().lower() in ("", "none"))):
        return None
    try:
        if origin is list:
            if args and args[0] is int:
                return int_list(value)
            items = list_items(value, "value")
            return [str(v).strip() for v in items] if args and args[0] is str else items
        if origin is dict:
            return json_object(value)
    except ConfigError:
        raise ValueError(expected(kind)) from None
    if isinstance(value, str):
        value = value.strip()
    if origin is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() not in _BOOLS:
            raise ValueError(expected(kind))
        return _BOOLS[str(value).lower()]
    if origin in (int, float):
        if isinstance(value, bool):
            raise ValueError(expected(kind))
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(expected(kind)) from None
        if origin is int:
            if not number.is_integer():
                raise ValueError(expected(kind))
            return int(number)
        return number
    if origin is str and not isinstance(value, str):
        if isinstance(value, (list, dict)):
            raise ValueError(expected(kind))
        return str(value)
    return value
