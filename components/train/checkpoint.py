"""Preemption checkpoints: Keras ``BackupAndRestore`` in a local folder, mirrored to a durable root.

TensorFlow's own ``gs://`` filesystem does not follow ``STORAGE_EMULATOR_HOST`` (so it cannot be
rehearsed) and needs its own credentials set-up; fsspec/gcsfs (which the rest of the package
uses for object storage) does both. So Keras writes its backup to a local folder, and after
every epoch :class:`Mirror` copies that folder to the durable ``remote`` (``gs://...``, ``s3://``,
Kubeflow's ``minio://``, a mounted path; see ``components/_shared/object_store.py``) as a new
snapshot ``epoch-NNNN/``, then writes ``state.json`` pointing at it (last, so a pod killed
mid-upload leaves the previous snapshot in force) and removes older snapshots. A retried attempt calls :meth:`Mirror.restore` before ``fit``: the
latest snapshot comes back into the local folder and ``BackupAndRestore`` resumes from it.

``state.json`` also carries what Keras does not checkpoint:

- ``history``: the logs of every finished epoch, so ``epochs_run`` and the best epoch count
  the epochs before a preemption too;
- early stopping's ``best`` / ``best_epoch`` / ``wait`` (the best weights are in the snapshot
  as ``best.weights.h5``), restored by :class:`ResumableEarlyStopping`; patience therefore
  counts across attempts. A pod killed after early stopping decided to stop but before the
  task finished trains one more epoch on resume (its ``wait`` is already at the patience);
- the MLflow run id, so a retried attempt logs into the same training run.

The task removes ``remote`` when it succeeds (:meth:`Mirror.clean`).
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
from typing import Optional

logger = logging.getLogger(__name__)

STATE_FILE = "state.json"
BEST_WEIGHTS = "best.weights.h5"


def _fs(uri: str):
    # also minio://, KFP's default pipeline root
    from components._shared.object_store import filesystem

    return filesystem(uri)


class Mirror:
    """A local backup folder and its durable copy at ``remote``."""

    def __init__(self, remote: str, local: str, write: bool = True):
        """``write=False`` (multi-worker training's other workers): restore from ``remote`` but never
        change it; the chief alone saves snapshots, state and clean-up."""
        self.write = write
        scheme, sep, rest = remote.rpartition("://")
        # "root/./x" (a pipeline root ending in "/.") would name other objects than "root/x" in a bucket.
        self.remote, self.local = scheme + sep + posixpath.normpath(rest), local
        self.fs, self.root = _fs(self.remote)
        self.state: dict = {}
        self.epoch_dir: Optional[str] = None

    def _join(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def restore(self) -> dict:
        """Bring the latest snapshot into the local folder; returns the saved state ({} if none)."""
        os.makedirs(self.local, exist_ok=True)
        state_path = self._join(STATE_FILE)
        if not self.fs.exists(state_path):
            return {}
        with self.fs.open(state_path, "r") as fh:
            state = json.load(fh)
        snapshot = self._join(state["snapshot"]).rstrip("/")
        found = self.fs.find(snapshot)
        for path in found:
            dest = os.path.join(self.local, path[len(snapshot) + 1:] if path.startswith(snapshot + "/")
                                else os.path.basename(path))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            self.fs.get_file(path, dest)
        if not found:
            logger.warning("checkpoint state %s names %s, which holds no files: starting over",
                           state_path, snapshot)
            return {}
        self.state, self.epoch_dir = state, state["snapshot"]
        logger.info("resuming from %s/%s: %d epoch(s) already trained", self.remote, state["snapshot"],
                    len(state.get("history", [])))
        return state

    def save(self, state: dict) -> None:
        """Upload the local folder as a new snapshot, then point ``state.json`` at it."""
        snapshot = f"epoch-{len(state.get('history', [])):04d}"
        if not self.write:
            self.state, self.epoch_dir = {**state, "snapshot": snapshot}, snapshot
            return
        self.fs.makedirs(self._join(snapshot), exist_ok=True)  # local paths need it; object stores ignore it
        for dirpath, _, files in os.walk(self.local):
            for name in files:
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, self.local).replace(os.sep, "/")
                if "/" in rel:
                    self.fs.makedirs(self._join(snapshot, rel.rsplit("/", 1)[0]), exist_ok=True)
                self.fs.put_file(path, self._join(snapshot, rel))
        state = {**state, "snapshot": snapshot}
        with self.fs.open(self._join(STATE_FILE), "w") as fh:
            json.dump(state, fh)
        if self.epoch_dir and self.epoch_dir != snapshot:
            self._remove(self._join(self.epoch_dir))
        self.state, self.epoch_dir = state, snapshot

    def write_state(self, **updates) -> None:
        """Record ``updates`` in ``state.json`` without a new snapshot (e.g. the MLflow run id)."""
        self.state = {**self.state, **updates}
        if self.epoch_dir is None or not self.write:  # nothing to point at yet: keep it for the first snapshot
            return
        with self.fs.open(self._join(STATE_FILE), "w") as fh:
            json.dump(self.state, fh)

    def _remove(self, path: str) -> None:
        try:
            if self.fs.exists(path):
                self.fs.rm(path, recursive=True)
        except FileNotFoundError:
            pass

    def clean(self) -> None:
        """Remove the durable checkpoints (the task succeeded: no retry will need them)."""
        if self.write:
            self._remove(self.root)


def callbacks(mirror: Mirror, early_stopping=None):
    """Keras callbacks: BackupAndRestore into ``mirror.local`` and the per-epoch mirror.

    Put them after ``early_stopping`` in the callback list: the mirror records the early-stopping
    state of the epoch that just ended, and ``BackupAndRestore`` loads the latest weights (and
    optimizer state) after early stopping has read the best ones.
    """
    import keras

    class _MirrorEpochs(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.history = list(mirror.state.get("history", []))

        def on_epoch_end(self, epoch, logs=None):
            self.history = self.history[:epoch] + [{k: float(v) for k, v in (logs or {}).items()}]
            state = {**mirror.state, "history": self.history}
            if early_stopping is not None:
                if early_stopping.best_epoch == epoch and early_stopping.best is not None:
                    self.model.save_weights(os.path.join(mirror.local, BEST_WEIGHTS), overwrite=True)
                state["early_stopping"] = {"best": _num(early_stopping.best), "best_epoch": early_stopping.best_epoch,
                                           "wait": early_stopping.wait}
            mirror.save(state)

    # Keras deletes its backup when fit ends; the mirror stays until the task succeeds.
    return [keras.callbacks.BackupAndRestore(mirror.local), _MirrorEpochs()]


def _num(v):
    return None if v is None else float(v)


def resumable_early_stopping(mirror: Optional[Mirror], **kwargs):
    """``keras.callbacks.EarlyStopping`` that starts from the state a previous attempt saved."""
    import keras

    class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            saved = (mirror.state.get("early_stopping") if mirror is not None else None) or {}
            if saved.get("best") is None:
                return
            self.best, self.best_epoch, self.wait = saved["best"], int(saved["best_epoch"]), int(saved["wait"])
            best_path = os.path.join(mirror.local, BEST_WEIGHTS)
            if self.restore_best_weights and os.path.exists(best_path):
                if self.model.optimizer is not None and not self.model.optimizer.built:
                    self.model.optimizer.build(self.model.trainable_variables)
                current = self.model.get_weights()
                self.model.load_weights(best_path)
                self.best_weights = self.model.get_weights()
                self.model.set_weights(current)

    return ResumableEarlyStopping(**kwargs)
