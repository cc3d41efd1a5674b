"""CPU time and memory of processes over a phase of a run, read from /proc.

A `Meter` samples resident memory of every watched process ten times a second in a
thread (for the peak) and reads CPU time at the start and end (for the mean cores used).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of `pid` so far; None once it has gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        return None


@dataclass(slots=True)
class ProcessUsage:
    """One process over one phase."""

    label: str
    pid: int
    cpu_s: float = 0.0
    cores: float = 0.0  # cpu_s over the phase's wall time
    peak_rss: int = 0
    last_rss: int = 0


@dataclass(slots=True)
class _Watched:
    label: str
    pid: int
    cpu_start: float
    peak: int = 0
    last: int = 0


@dataclass
class Meter:
    """Watches labelled pids from `start()` to `stop()`; not reusable."""

    interval_s: float = 0.1
    _watched: list[_Watched] = field(default_factory=list)
    _thread: threading.Thread | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)
    _started_at: float = 0.0

    def watch(self, label: str, pid: int) -> None:
        self._watched.append(_Watched(label, pid, cpu_seconds(pid) or 0.0))

    def start(self) -> Meter:
        self._started_at = time.monotonic()
        for w in self._watched:
            w.cpu_start = cpu_seconds(w.pid) or 0.0
        self._thread = threading.Thread(target=self._sample, name="bench-meter", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[ProcessUsage]:
        wall = max(time.monotonic() - self._started_at, 1e-9)
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        self._sample_once()
        out = []
        for w in self._watched:
            end = cpu_seconds(w.pid)
            cpu = 0.0 if end is None else end - w.cpu_start
            out.append(ProcessUsage(w.label, w.pid, cpu, cpu / wall, w.peak, w.last))
        return out

    def _sample(self) -> None:
        while not self._stopping.wait(self.interval_s):
            self._sample_once()

    def _sample_once(self) -> None:
        for w in self._watched:
            rss = rss_bytes(w.pid)
            if rss is not None:
                w.last = rss
                w.peak = max(w.peak, rss)
