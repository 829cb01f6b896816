"""What a process tree uses, for the benchmarks: its peak resident memory and CPU seconds
sampled while it runs (:class:`TreeSampler`), and its CPU seconds read at one moment, ended
children included (:func:`tree_cpu_seconds`)."""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from collections.abc import Callable

import psutil


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and all its descendants, reaped children included (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    children.setdefault(int(fh.read().rsplit(")", 1)[1].split()[1]), []).append(int(entry))
            except OSError:  # exited meanwhile
                pass
    ticks, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            with open(f"/proc/{current}/stat") as fh:
                ticks += sum(int(x) for x in fh.read().rsplit(")", 1)[1].split()[11:15])
        except OSError:
            pass
        stack.extend(children.get(current, []))
    return ticks / os.sysconf("SC_CLK_TCK")


def is_jvm(process: psutil.Process) -> bool:
    """Whether ``process`` runs ``java`` (a Spark driver or executor; the sampler's roles start here)."""
    line = process.cmdline()
    return bool(line) and os.path.basename(line[0]) == "java"


def jvm_spawn_in_flight(process: psutil.Process) -> bool:
    """Whether ``process`` is a JVM's child between its fork and its exec.

    A JVM runs a command (Hadoop's ``chmod`` on every file a local write commits, PySpark's
    daemon) by forking a child that then executes a helper. Until it does, the child is a
    second ``java`` with its parent's command line, reporting its parent's resident pages as
    its own: counted, it doubles the JVM for one sample. A JVM never starts another JVM
    this way, so such a child is not counted.
    """
    if not is_jvm(process):
        return False
    parent = process.parent()
    return parent is not None and parent.cmdline() == process.cmdline()


class TreeSampler:
    """Every 0.2 s, the RSS of each process under ``pid`` (``pid`` itself too, with
    ``include_root``) summed per ``role(process)`` — a name, or None to leave the process out —
    and the peak of those sums and of their total; also each counted process's CPU seconds.
    A JVM's child caught between fork and exec is not counted (:func:`jvm_spawn_in_flight`).

    CPU seconds (user + system, each process's last sample, summed) measure the work done
    whatever else runs on the machine; processes living less than 0.2 s are missed.
    Use as a context manager, or call :meth:`stop`.
    """

    def __init__(self, pid: int, role: Callable[[psutil.Process], str | None], include_root: bool = True) -> None:
        self.root, self.role, self.include_root = psutil.Process(pid), role, include_root
        self.peak = 0
        self.peak_by_role: dict[str, int] = defaultdict(int)
        self.role_of: dict[int, str] = {}  # pid -> role, for every process counted
        self._cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            by_role: dict[str, int] = defaultdict(int)
            try:
                processes = [self.root] * self.include_root + self.root.children(recursive=True)
            except psutil.Error:
                continue
            for p in processes:
                try:
                    with p.oneshot():
                        name = None if jvm_spawn_in_flight(p) else self.role(p)
                        if name is None:
                            continue
                        by_role[name] += p.memory_info().rss
                        times = p.cpu_times()
                except psutil.Error:  # exited since it was listed
                    continue
                self.role_of[p.pid] = name
                self._cpu[p.pid] = times.user + times.system
            self.peak = max(self.peak, sum(by_role.values()))
            for name, rss in by_role.items():
                self.peak_by_role[name] = max(self.peak_by_role[name], rss)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def cpu_seconds(self) -> float:
        return sum(self._cpu.values())

    def peak_mb(self) -> dict[str, int]:
        """Peak RSS per role, in MB."""
        return {name: rss // 2**20 for name, rss in self.peak_by_role.items()}

    def __enter__(self) -> TreeSampler:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
