"""Counter and histogram values of a worker kept in memory, written to the multiprocess files in batches.

With several workers, prometheus_client keeps every value in a memory-mapped file per
process, and each `inc()` takes a lock, checks the pid and writes the file: a request
makes a dozen of those (its counters, its histograms' sums and buckets, the store
timings). Here an `inc()` adds to a float and marks the value; `flush()` writes each
marked value once. The worker flushes every `FLUSH_S`, before it answers a scrape, and
at shutdown, so a scrape shows its own worker's values exactly and the others' as of
their last flush, at most `FLUSH_S` old. Gauges are written through as before: they are
set by background loops, not per request, and a livesum gauge must leave the sums when
its process does.

Values are changed on the event loop's thread only (the request path and background
loops); `flush()` runs there too, so a value is never changed while it is written.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import values

FLUSH_S = 0.5
_BUFFERED_TYPES = frozenset({"counter", "histogram", "summary"})


class ValueBuffer:
    """The marked values of this process and the value class that marks them."""

    def __init__(self, base: type) -> None:
        self.base = base
        self._dirty: list[Any] = []
        dirty = self._dirty

        class BufferedValue:
            """One series' value: the file's, plus what was added since the last flush."""

            __slots__ = ("_file_value", "_marked", "_pending")
            _multiprocess = True

            def __init__(self, typ: str, *args: Any, **kwargs: Any) -> None:
                self._file_value = base(typ, *args, **kwargs)
                self._pending = 0.0
                self._marked = False

            def inc(self, amount: float) -> None:
                self._pending += amount
                if not self._marked:
                    self._marked = True
                    dirty.append(self)

            def set(self, value: float, timestamp: float | None = None) -> None:
                self._pending = 0.0  # a flush then writes nothing for it
                self._file_value.set(value, timestamp)

            def set_exemplar(self, exemplar: Any) -> None:
                self._file_value.set_exemplar(exemplar)

            def get(self) -> float:
                return self._file_value.get() + self._pending

            def get_exemplar(self) -> Any:
                return self._file_value.get_exemplar()

            def write(self) -> None:
                amount, self._pending, self._marked = self._pending, 0.0, False
                if amount:
                    self._file_value.inc(amount)

        def value_class(typ: str, *args: Any, **kwargs: Any) -> Any:
            if typ in _BUFFERED_TYPES:
                return BufferedValue(typ, *args, **kwargs)
            return base(typ, *args, **kwargs)

        self.value_class = value_class

    def flush(self) -> None:
        """Write every value changed since the last flush to this process's files."""
        dirty = self._dirty
        while dirty:
            marked = dirty[:]
            dirty.clear()
            for value in marked:
                value.write()

    def __len__(self) -> int:
        """Values waiting for the next flush."""
        return len(self._dirty)


_installed: ValueBuffer | None = None


def install() -> ValueBuffer:
    """Make this process's counters and histograms created from now on buffered; once per process.

    prometheus_client creates each series' value with `values.ValueClass` when the series
    is first used: replacing it is the one hook it has.
    """
    global _installed
    if _installed is None:
        _installed = ValueBuffer(values.ValueClass)
        values.ValueClass = _installed.value_class
    return _installed
