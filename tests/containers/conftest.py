"""Order the container-contract tests role by role, so one role's virtualenv is built, used by
every test that needs it, and (with ``KFP_TF_GATE_ONE_ROLE_VENV=1``, as CI runs it) removed
before the next role's is built: a role venv is 1.4-3.6 GB, and three at once beside the
development venv filled a CI machine's disk."""

from __future__ import annotations


def _role(item) -> str | None:
    params = getattr(getattr(item, "callspec", None), "params", {})
    if "role" in params:
        return params["role"]
    role_of = getattr(item.module, "ROLE_OF", {})
    return role_of.get(params.get("fn"))


def pytest_collection_modifyitems(config, items):
    # Called with every collected item (conftest hooks are not scoped to their folder).
    slots = [i for i, item in enumerate(items) if item.nodeid.startswith("tests/containers/")]
    if not slots:
        return
    ours = [items[i] for i in slots]
    roles = getattr(ours[0].module, "ROLES", ())
    order = {role: n for n, role in enumerate(roles)}

    def key(item):
        role = _role(item)
        # Role-less tests (the printed report) go last, after every role's measurements.
        return order.get(role, len(order)) if role is not None else len(order) + 1

    for i, item in zip(slots, sorted(ours, key=key), strict=True):  # sorted() is stable
        items[i] = item
