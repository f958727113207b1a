"""File locks across processes: one holder at a time of a runs dir or of a local MLflow store.

``fcntl.flock`` on a lock file that is never deleted (deleting it would let a third process lock
a fresh file while a second still holds the old one). The holder writes who it is into the file
(pid, host, start time, command), so a process that waits, or gives up, can name it. The kernel
drops the lock when its holder dies, so a killed run never leaves a stale lock behind; its note
stays in the file until the next holder overwrites it.

Locks are re-entrant within one thread (a run that holds the runs dir may call code that takes
the same lock again); another thread or process waits. ``flock`` works on local disks; on NFS,
Linux emulates it with POSIX locks, which needs a working lock daemon.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Optional

from components._shared.errors import PipelineError

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.1
WARN_AFTER_SECONDS = 2.0
_SECRET_FLAGS = ("token", "password", "secret", "key")
_held: dict = {}  # lock path -> id of the thread of this process that holds it
_held_guard = threading.Lock()


class LockTimeout(PipelineError):
    """Another process held a lock longer than this one would wait."""

    transient = True  # the holder finishes: a later attempt can succeed


def _command() -> str:
    """This process's command line, short, with the values of secret-looking flags hidden."""
    argv = list(sys.argv)
    if argv and argv[0].endswith("__main__.py"):
        argv[0] = f"python -m {os.path.basename(os.path.dirname(argv[0]))}"
    elif argv and argv[0] in ("-c", "-m", ""):
        argv[0] = "python " + argv[0] if argv[0] else "python"
    shown, hide_next = [], False
    for arg in argv:
        flag = arg.split("=", 1)[0].lower()
        if hide_next:
            shown.append("***")
        elif arg.startswith("-") and "=" in arg and any(s in flag for s in _SECRET_FLAGS):
            shown.append(arg.split("=", 1)[0] + "=***")
        else:
            shown.append(arg)
        hide_next = arg.startswith("-") and "=" not in arg and any(s in flag for s in _SECRET_FLAGS)
    text = " ".join(shown)
    return text if len(text) <= 120 else text[:117] + "..."


def holder_note() -> dict:
    """What a holder writes into its lock file."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": _command(),
    }


def read_holder(path: str) -> Optional[dict]:
    """The note of the process holding (or that last held) the lock at ``path``, if readable."""
    try:
        with open(path) as fh:
            note = json.loads(fh.read() or "null")
    except (OSError, ValueError):
        return None
    return note if isinstance(note, dict) else None


def describe_holder(note: Optional[dict]) -> str:
    """``another process (pid N on host, started T, `cmd`)``, or as much of it as is known."""
    if not note:
        return "another process"
    return (f"another process (pid {note.get('pid', '?')} on {note.get('host', '?')}, started "
            f"{note.get('started', '?')}, `{note.get('command', '?')}`)")


@contextlib.contextmanager
def hold(path: str, what: str, timeout: Optional[float] = None, advice: str = "") -> Iterator[None]:
    """Hold the exclusive lock at ``path`` (created if missing) for the ``with`` block.

    Args:
        path: The lock file.
        what: What the lock protects, for messages (e.g. "the runs dir /x/runs").
        timeout: Seconds to wait for another holder; None waits for ever, 0 not at all.
        advice: What to do when the wait ran out, appended to the message.

    Raises:
        LockTimeout: Another process held the lock for longer than ``timeout``; one sentence
            naming it (pid, host, start time, command).
    """
    import fcntl

    path = os.path.abspath(path)
    me = threading.get_ident()
    with _held_guard:
        reentered = _held.get(path) == me
    if reentered:  # the outer ``with`` releases it
        yield
        return

    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        started = time.monotonic()
        deadline = None if timeout is None else started + max(0.0, timeout)
        warned = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() >= deadline:
                    waited = f" after waiting {timeout:g} s" if timeout else ""
                    raise LockTimeout(f"{describe_holder(read_holder(path))} holds {what}{waited}; "
                                      + (advice or "wait for it to finish, or stop it, and try again")
                                      ) from None
                if not warned and time.monotonic() - started >= WARN_AFTER_SECONDS:  # a wait people notice
                    limit = "" if deadline is None else f" (up to {timeout:g} s)"
                    logger.warning("waiting%s for %s: %s holds it", limit, what, describe_holder(read_holder(path)))
                    warned = True
                time.sleep(POLL_SECONDS)
        note = json.dumps(holder_note()).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, note, 0)
        with _held_guard:
            _held[path] = me
        try:
            yield
        finally:
            with _held_guard:
                _held.pop(path, None)
            os.ftruncate(fd, 0)  # no note of a holder that has gone
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
