"""Warm-up replay in a child process that imports TensorFlow while deploy does its MLflow work.

``python -m components.deploy.warmup --wait`` imports TensorFlow, then reads one SavedModel path
from stdin (an empty stdin means: nothing to verify), replays that model's warm-up requests as
TF Serving would (:func:`components._shared.warmup.replay_warmup`) and prints one JSON line:
``{"requests": n}`` or ``{"error": "..."}``.

TensorFlow's import (about 4 s) is most of deploy's own time; started first, it overlaps with
importing MLflow, reading the reference sample and registering the version. A fresh process
also loads the pushed copy the way a server would: nothing from the exporting process is reused.

Export already loaded the SavedModel and replayed these requests, and records the digest of the
files that answered them (every byte, warm-up requests included:
:func:`components._shared.warmup.verified_digest`). :func:`start_warmup` therefore starts the
child only when the SavedModel deploy was given is not byte for byte what export verified; when it
is, :class:`ExportVerified` checks the pushed copy's digest instead, and loads and replays a copy
that differs in any byte in a child as before (a changed or corrupt file is still refused).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from typing import Optional, Union

from components._shared.errors import ModelError

logger = logging.getLogger(__name__)


class WarmupJob:
    """The child process; :meth:`verify` is deploy's ``verify`` callable."""

    def __init__(self, timeout: float = 900):
        self.timeout = timeout
        self.proc: Optional[subprocess.Popen] = subprocess.Popen(
            [sys.executable, "-m", "components.deploy.warmup", "--wait"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def verify(self, saved_model_dir: str) -> int:
        """Replay ``saved_model_dir``'s warm-up requests in the child; raise ModelError on failure."""
        if self.proc is None:
            raise ModelError("the warm-up process was already used or stopped")
        proc, self.proc = self.proc, None
        try:
            out, err = proc.communicate(saved_model_dir + "\n", timeout=self.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise ModelError(f"the warm-up requests to {saved_model_dir} did not finish within {self.timeout:.0f} s") from None
        lines = [ln for ln in out.strip().splitlines() if ln.startswith("{")]
        if not lines:
            tail = (err.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
            raise ModelError(f"the warm-up process for {saved_model_dir} failed: {tail}")
        result = json.loads(lines[-1])
        if "error" in result:
            raise ModelError(result["error"])
        return int(result["requests"])

    def cancel(self) -> None:
        """Stop the child when deploy fails before verifying (it has done nothing but imports)."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        proc.kill()
        proc.communicate()


class ExportVerified:
    """deploy's ``verify`` when export replayed the warm-up requests of exactly these bytes."""

    def __init__(self, digest: str, requests: int, timeout: float = 900):
        self.digest, self.requests, self.timeout = digest, int(requests), timeout

    def verify(self, saved_model_dir: str) -> int:
        """The recorded count when ``saved_model_dir`` (a local folder) has export's digest; else
        load and replay it in a child process (ModelError on failure)."""
        from components._shared.warmup import verified_digest

        if verified_digest(saved_model_dir) == self.digest:
            logger.info("%s is byte for byte the SavedModel export loaded and warmed up (%d requests): not "
                        "replayed again", saved_model_dir, self.requests)
            return self.requests
        logger.warning("%s differs from the SavedModel export verified: loading it and replaying its warm-up "
                       "requests", saved_model_dir)
        return WarmupJob(self.timeout).verify(saved_model_dir)

    def cancel(self) -> None:
        """Nothing runs until :meth:`verify`."""


def start_warmup(saved_model_dir: str, export_metrics: Optional[dict] = None) -> Union[WarmupJob, ExportVerified]:
    """deploy's warm-up check: :class:`ExportVerified` when export's metrics record the digest of
    ``saved_model_dir`` as it is now, else a :class:`WarmupJob` started at once (TensorFlow's
    import overlaps with deploy's registry work)."""
    from components._shared.warmup import verified_digest

    meta = export_metrics or {}
    digest, requests = meta.get("saved_model_digest"), meta.get("warmup_requests")
    if digest and requests and verified_digest(saved_model_dir) == digest:
        return ExportVerified(str(digest), int(requests))
    return WarmupJob()


def main() -> int:
    import tensorflow  # noqa: F401  (the slow part, done while the parent works)

    from components._shared.warmup import replay_warmup

    path = sys.stdin.readline().strip()
    if not path:
        return 0
    try:
        result = {"requests": replay_warmup(path)}
    except Exception as exc:  # reported to the parent, which decides
        result = {"error": str(exc)}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1:] != ["--wait"]:
        sys.exit("usage: python -m components.deploy.warmup --wait  (then a SavedModel path on stdin)")
    sys.exit(main())
