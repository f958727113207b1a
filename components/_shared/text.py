"""Values as words for reports people read (model card, monitor report): never Python or JSON text."""

from __future__ import annotations


def plain(v, none: str = "n/a") -> str:
    """yes/no, compact numbers, lists joined with commas, dicts as "key value; ..." (in key order)."""
    if v is None:
        return none
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(plain(x, none) for x in v) or "none"
    if isinstance(v, dict):
        return "; ".join(f"{k} {plain(x, none)}" for k, x in v.items()) or "none"
    return str(v)
