"""Fault points: a real crash at a named step, for the fault-injection tests.

``point("deploy:after-push")`` does nothing unless the environment variable ``KFP_TF_GATE_FAULT``
names that point (a comma-separated list may name several); then the process ends at once with
status 137, as a SIGKILL or an OOM kill would end it: no ``finally``, no ``atexit``, no flush.
The variable is read at each call, never at import.
"""

from __future__ import annotations

import os
import sys

ENV = "KFP_TF_GATE_FAULT"
EXIT_STATUS = 137


def point(name: str) -> None:
    """Crash here when ``KFP_TF_GATE_FAULT`` names this point."""
    wanted = os.environ.get(ENV, "")
    if wanted and name in (w.strip() for w in wanted.split(",")):
        sys.stderr.write(f"fault injected at {name}\n")
        sys.stderr.flush()
        os._exit(EXIT_STATUS)
