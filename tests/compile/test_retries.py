"""Retry policies of the compiled training pipeline: only tasks that fail fast on a deterministic error retry.

Compiled fresh (not read from compiled/), so the policy is checked as the code states it.
"""

from __future__ import annotations

import pytest
import yaml

from components._shared.images import Images
from pipelines.compile import compile_text
from pipelines.training import CompileOptions, build_pipeline


def _seconds(duration: str) -> float:
    assert duration.endswith("s"), duration
    return float(duration[:-1])


def _tasks(spec: dict):
    for component in [spec["root"], *spec["components"].values()]:
        yield from (component.get("dag") or {}).get("tasks", {}).items()


@pytest.mark.parametrize("target", ["kubeflow", "vertex"])
def test_retried_tasks_fail_fast_and_back_off_briefly(target):
    spec = next(yaml.safe_load_all(compile_text(build_pipeline(CompileOptions(target)), Images())))
    policies = {name: task["retryPolicy"] for name, task in _tasks(spec) if task.get("retryPolicy")}
    assert set(policies) == {"champion-reference", "train-model", "compare-models", "deploy-model"}
    executors = spec["deploymentSpec"]["executors"]
    for name, policy in policies.items():
        container = executors[f"exec-{name}"]["container"]
        # Every retried task's code records a deterministic error so its retries fail at once.
        assert "fail_fast(" in " ".join(container.get("command", []) + container.get("args", [])), name
        waits = [min(_seconds(policy["backoffDuration"]) * policy["backoffFactor"] ** i,
                     _seconds(policy["backoffMaxDuration"])) for i in range(policy["maxRetryCount"])]
        # A deterministic failure ends after these waits (each later attempt fails at once).
        assert sum(waits) <= (35 if name == "train-model" else 15), (name, waits)
    # train runs on preemptible GPU nodes and resumes from checkpoints: one more attempt than the others.
    assert policies["train-model"]["maxRetryCount"] == policies["compare-models"]["maxRetryCount"] + 1


def test_a_local_run_does_not_retry():
    # One process on this machine: no pod to lose; a failure is reported at once.
    spec = next(yaml.safe_load_all(compile_text(build_pipeline(CompileOptions("local")), Images())))
    assert all(not (task.get("retryPolicy") or {}).get("maxRetryCount") for _, task in _tasks(spec))
