"""Regenerate the pinned, hashed requirements of each container image from pyproject.toml.

    python containers/lock.py                 # every role
    python containers/lock.py trainer         # one role
    python containers/lock.py --check         # exit 1 when a lock is stale (no network)

Each image installs ``containers/<role>/requirements.lock`` with ``pip install --no-deps
--require-hashes`` and then this project's wheel with ``--no-deps``, so the lock must hold the
complete closure. It is resolved by pip's own resolver against PyPI for CPython 3.11 on
x86_64 Linux, ignoring whatever is installed here (a fresh-environment resolution), and
records the SHA-256 of the exact file pip chose. The header keeps a hash of the inputs
(pyproject requirements of the role), so a test notices when pyproject changed and the
lock did not. ``tests/containers/test_contract.py`` proves the lock is complete: a fresh
virtualenv built only from it runs every component of the role.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from typing import Optional

import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INDEX_URL = "https://pypi.org/simple"
PYTHON = "3.11"
# The images' base, and the newest glibc its wheels may need (python:3.11-slim-bookworm is
# Debian 12, glibc 2.36; the TensorFlow GPU image is Ubuntu 22.04, glibc 2.35).
ROLES = {
    "data": {"extras": ["data"], "base": "python:3.11.14-slim-bookworm", "glibc": (2, 36)},
    "trainer": {"extras": ["train"], "base": "tensorflow/tensorflow:2.21.0-gpu", "glibc": (2, 35)},
    "deploy": {"extras": ["deploy"], "base": "python:3.11.14-slim-bookworm", "glibc": (2, 36)},
}
PROJECT = "kfp-tf-gate"


def lock_path(role: str) -> str:
    return os.path.join(ROOT, "containers", role, "requirements.lock")


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def role_requirements(role: str, pyproject: Optional[str] = None) -> list[str]:
    """The project's requirements for a role: core dependencies plus the role's extras."""
    with open(pyproject or os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        project = tomllib.load(fh)["project"]
    optional = project.get("optional-dependencies", {})
    reqs, todo, seen = list(project["dependencies"]), list(ROLES[role]["extras"]), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for req in optional[extra]:
            self_ref = re.match(rf"^{PROJECT}\[(.+)\]$", req.replace(" ", ""))
            if self_ref:
                todo.extend(self_ref.group(1).split(","))
            else:
                reqs.append(req)
    return sorted(set(reqs))


def inputs_hash(role: str, pyproject: Optional[str] = None) -> str:
    text = "\n".join(
        role_requirements(role, pyproject) + [f"python=={PYTHON}", f"index={INDEX_URL}"]
    )
    return hashlib.sha256(text.encode()).hexdigest()


def recorded_inputs_hash(role: str) -> Optional[str]:
    if not os.path.exists(lock_path(role)):
        return None
    with open(lock_path(role)) as fh:
        for line in fh:
            if line.startswith("# inputs-sha256: "):
                return line.split(":", 1)[1].strip()
    return None


def _min_glibc(filename: str) -> Optional[tuple[int, int]]:
    """Oldest glibc a wheel accepts (None for pure-Python wheels and sdists)."""
    if not filename.endswith(".whl"):
        return None
    platforms = filename[:-4].split("-")[-1].split(".")
    found = []
    for plat in platforms:
        m = re.match(r"manylinux_(\d+)_(\d+)_", plat)
        if m:
            found.append((int(m.group(1)), int(m.group(2))))
        elif plat.startswith("manylinux2014"):
            found.append((2, 17))
        elif plat.startswith("manylinux2010"):
            found.append((2, 12))
        elif plat.startswith("manylinux1"):
            found.append((2, 5))
        elif plat == "any":
            return None
    return min(found) if found else None


def resolve(role: str) -> list[dict]:
    """Run pip's resolver for the role (dry run, nothing installed) and return its report."""
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "report.json")
        env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        for var in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CONSTRAINT"):
            env.pop(var, None)
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--index-url",
            INDEX_URL,
            "--report",
            report,
            *role_requirements(role),
        ]
        subprocess.run(cmd, check=True, env=env)
        with open(report) as fh:
            return json.load(fh)["install"]


def _via(items: list[dict]) -> dict[str, list[str]]:
    """Package -> the resolved packages that require it (for reviewers of the lock)."""
    from packaging.requirements import Requirement

    meta = {_canon(i["metadata"]["name"]): i for i in items}
    via: dict[str, set] = {n: set() for n in meta}
    # Extras asked of a package by its dependents (e.g. google-api-core[grpc]) enable more of
    # its own requirements: iterate until no new extra appears.
    extras = {
        n: {""} | {e.lower() for e in (i.get("requested_extras") or [])} for n, i in meta.items()
    }
    changed = True
    while changed:
        changed = False
        for parent, item in meta.items():
            for spec in item["metadata"].get("requires_dist") or []:
                req = Requirement(spec)
                child = _canon(req.name)
                if child not in meta:
                    continue
                if req.marker is None or any(
                    req.marker.evaluate({"extra": e}) for e in extras[parent]
                ):
                    via[child].add(parent)
                    new = {e.lower() for e in req.extras} - extras[child]
                    if new:
                        extras[child] |= new
                        changed = True
    return {k: sorted(v) for k, v in via.items()}


def render(role: str, items: list[dict]) -> str:
    spec = ROLES[role]
    top = {_canon(re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0]) for r in role_requirements(role)}
    via = _via(items)
    lines = [
        f"# containers/{role}/requirements.lock: generated by `python containers/lock.py {role}`; do not edit.",
        f"# Image role {role!r} (base {spec['base']}), pyproject extras: {', '.join(spec['extras'])}.",
        f"# CPython {PYTHON}, x86_64 Linux, wheels for glibc <= {spec['glibc'][0]}.{spec['glibc'][1]};"
        f" resolved from {INDEX_URL} on {datetime.date.today().isoformat()}.",
        "# Install with: pip install --no-deps --require-hashes -r requirements.lock",
        f"# inputs-sha256: {inputs_hash(role)}",
    ]
    too_new = []
    for item in sorted(items, key=lambda i: _canon(i["metadata"]["name"])):
        name, version = _canon(item["metadata"]["name"]), item["metadata"]["version"]
        info = item["download_info"]
        sha = (info.get("archive_info") or {}).get("hashes", {}).get("sha256")
        if not sha:
            raise SystemExit(f"{name}=={version}: the index gave no sha256 for {info.get('url')}")
        filename = info["url"].rsplit("/", 1)[-1]
        need = _min_glibc(filename)
        if need and need > spec["glibc"]:
            too_new.append(f"{filename} needs glibc {need[0]}.{need[1]}")
        parents = via.get(name) or []
        source = "pyproject" if name in top else ", ".join(parents) or "?"
        if name in top and parents:
            source += ", " + ", ".join(parents)
        lines.append(f"{name}=={version} \\")
        lines.append(f"    --hash=sha256:{sha}")
        lines.append(f"    # via {source}")
    if too_new:
        raise SystemExit(f"{role}: wheels too new for {spec['base']}: " + "; ".join(too_new))
    return "\n".join(lines) + "\n"


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "roles", nargs="*", metavar="ROLE", help=f"roles to lock: {', '.join(ROLES)} (default: all)"
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when a lock is stale for pyproject.toml"
    )
    args = parser.parse_args(argv)
    roles = args.roles or list(ROLES)
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        parser.error(f"unknown role(s) {', '.join(unknown)}; expected {', '.join(ROLES)}")
    if args.check:
        stale = [r for r in roles if recorded_inputs_hash(r) != inputs_hash(r)]
        for r in stale:
            print(f"stale: {lock_path(r)} (run `python containers/lock.py {r}`)", file=sys.stderr)
        return 1 if stale else 0
    for role in roles:
        text = render(role, resolve(role))
        os.makedirs(os.path.dirname(lock_path(role)), exist_ok=True)
        with open(lock_path(role), "w") as fh:
            fh.write(text)
        print(f"wrote {os.path.relpath(lock_path(role), ROOT)} ({text.count('--hash=')} packages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
