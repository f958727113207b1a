"""Peak RSS and CPU time of a process tree, per pipeline step, by polling /proc with psutil.

A thread samples the tree under one root process every ``interval`` seconds. Each process is
attributed to a label: the ``--function_to_execute`` argument of its own command line or of its
nearest ancestor that has one (so validate's evidently child counts towards validate), else the
label given for the root (the local runner). Per label it keeps the largest *sum* of RSS seen in
one sample (RSS double-counts shared library pages: an upper bound, the usual ``ps`` view).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Optional

FUNCTION_FLAG = "--function_to_execute"


def _function_of(cmdline: list) -> Optional[str]:
    for i, arg in enumerate(cmdline[:-1]):
        if arg == FUNCTION_FLAG:
            return cmdline[i + 1]
    for arg in cmdline:
        if arg.startswith(FUNCTION_FLAG + "="):
            return arg.split("=", 1)[1]
    return None


class TreeMonitor:
    """Sample a process tree until ``stop()``; read ``peaks`` (bytes) and ``cpu_seconds`` per label."""

    def __init__(
        self,
        root_pid: int,
        root_label: str = "runner",
        interval: float = 0.05,
        label_children_as_root: bool = False,
    ):
        import psutil

        self._psutil = psutil
        self.root_pid = root_pid
        self.root_label = root_label
        self.interval = interval
        self.label_children_as_root = label_children_as_root
        self.peaks: dict = {}  # label -> max summed RSS in one sample (bytes)
        self.peak_total = 0
        self.first_seen: dict = {}  # label -> wall time first seen
        self.last_seen: dict = {}
        self._cpu: dict = {}  # pid -> (label, user+system seconds, last sample)
        self._labels: dict = {}  # pid -> label
        self._procs: dict = {}  # pid -> psutil.Process (cached: create_time guards pid reuse)
        self.samples = 0
        self._stop = threading.Event()
        self._sys_cpu0 = psutil.cpu_times()
        self._t0 = time.time()
        self._thread = threading.Thread(target=self._run, name="bench-procmon", daemon=True)

    def start(self) -> TreeMonitor:
        self._thread.start()
        return self

    def _label(self, pid: int, by_pid: dict, pid_parent: dict, depth: int = 0) -> str:
        if pid in self._labels:
            return self._labels[pid]
        label = self.root_label if self.label_children_as_root or pid == self.root_pid else None
        if label is None and pid in by_pid:
            try:
                label = _function_of(by_pid[pid].cmdline())
            except (
                self._psutil.NoSuchProcess,
                self._psutil.AccessDenied,
                self._psutil.ZombieProcess,
            ):
                pass
        if label is not None:
            self._labels[pid] = label  # final: from the process's own command line
            return label
        # Inherited labels are not cached: between fork and exec a task's command line is
        # still its parent's, and it must be re-read once the executor has started.
        parent = pid_parent.get(pid)
        if parent is not None and parent in by_pid and depth < 50:
            return self._label(parent, by_pid, pid_parent, depth + 1)
        return self.root_label

    def _sample(self) -> None:
        psutil = self._psutil
        try:
            root = self._procs.get(self.root_pid) or psutil.Process(self.root_pid)
            self._procs[self.root_pid] = root
            procs = [root] + root.children(recursive=True)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return
        pid_parent = {}
        for p in procs:
            try:
                pid_parent[p.pid] = p.ppid()
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                pass
        sums: dict = {}
        total = 0
        now = time.time()
        by_pid = {}
        for p in procs:
            try:
                cached = self._procs.get(p.pid)
                if cached is None or cached.create_time() != p.create_time():
                    self._procs[p.pid] = p
                    self._labels.pop(p.pid, None)
                by_pid[p.pid] = self._procs[p.pid]
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue
        for pid, cached in by_pid.items():
            try:
                with cached.oneshot():
                    rss = cached.memory_info().rss
                    ct = cached.cpu_times()
                label = self._label(pid, by_pid, pid_parent)
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue
            self._cpu[(pid, cached.create_time())] = (label, ct.user + ct.system)
            sums[label] = sums.get(label, 0) + rss
            total += rss
            self.first_seen.setdefault(label, now)
            self.last_seen[label] = now
        for label, rss in sums.items():
            if rss > self.peaks.get(label, 0):
                self.peaks[label] = rss
        self.peak_total = max(self.peak_total, total)
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def stop(self) -> TreeMonitor:
        self._sample()
        self._stop.set()
        self._thread.join()
        self.wall = time.time() - self._t0
        sys1 = self._psutil.cpu_times()
        busy = lambda t: (
            t.user
            + t.system
            + getattr(t, "nice", 0)
            + getattr(t, "irq", 0)
            + getattr(t, "softirq", 0)
        )  # noqa: E731
        self.system_cpu_seconds = busy(sys1) - busy(self._sys_cpu0)
        return self

    @property
    def cpu_seconds(self) -> dict:
        """CPU seconds per label (as of each process's last sample: a slight undercount)."""
        out: dict = {}
        for label, secs in self._cpu.values():
            out[label] = out.get(label, 0.0) + secs
        return out

    def noise(self) -> dict:
        """How busy the machine was with *other* work while this tree ran (in cores)."""
        ours = sum(self.cpu_seconds.values())
        wall = max(getattr(self, "wall", time.time() - self._t0), 1e-9)
        others = max(0.0, getattr(self, "system_cpu_seconds", 0.0) - ours)
        return {
            "tree_cpu_seconds": round(ours, 2),
            "other_cpu_seconds": round(others, 2),
            "other_cores_busy": round(others / wall, 2),
            "cores": os.cpu_count(),
        }


def run_figures(command: str, returncode: int, t0: float, t1: float, load_before: list, busy_before,
                mon: TreeMonitor) -> dict:
    """What every measured process run reports: its command, exit status, wall time, the load around
    it and the peak RSS of its process tree."""
    return {
        "command": command,
        "returncode": returncode,
        "wall_s": t1 - t0,
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
        "other_cores_busy_before": busy_before,
        "noise": mon.noise(),
        "peak_rss_any_process_tree_bytes": mon.peak_total,
    }


def loadavg() -> list:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on Linux
        return []


def machine() -> dict:
    """A description of this machine for the report."""
    import platform

    import psutil

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        usable = os.cpu_count()
    versions = {}
    from importlib import metadata

    for dist in (
        "kfp",
        "tensorflow-cpu",
        "tensorflow",
        "keras",
        "pandas",
        "pyarrow",
        "evidently",
        "mlflow",
        "ai-edge-litert",
    ):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    gpus = 0
    if os.path.isdir("/proc/driver/nvidia/gpus"):
        gpus = len(os.listdir("/proc/driver/nvidia/gpus"))
    return {
        "cpu": cpu,
        "cores": usable,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "gpus": gpus,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": versions,
    }
