"""`python -m bench.request_log`: the CPU one request line costs a worker, against a logging.LogRecord.

The request line is built and buffered on the event loop (the write happens on another
thread, a few times a second); the alternative measured is what `logging` would cost for
the same line: a LogRecord through a JSON formatter to a handler that discards it.
"""

from __future__ import annotations

import logging
import os
import time
import timeit

from prometheus_client import CollectorRegistry

from gateway.observability.logs import JsonFormatter
from gateway.observability.request_log import RequestLog, UtcClock, record_fields
from gateway.store import UsageRecord

N = 200_000


def sample() -> UsageRecord:
    return UsageRecord(team="research", key_id="key_0123456789abcdef", model="llama-3.1-8b", provider="deepinfra",
                       prompt_tokens=812, completion_tokens=164, cost_nano=32_560, provider_cost_nano=None,
                       status=200, latency_ms=912, time_ms=int(time.time() * 1000), day="2026-12-01",
                       month="2026-12", request_id="3f2a9c1e5b7d4e0f8a6b2c4d1e3f5a7b", table_cost_nano=32_560,
                       endpoint="chat", attempts=1, ttfb_ms=184, stream=True)


class Discard(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)


def main() -> None:
    record = sample()
    with open(os.devnull, "wb") as devnull:
        log = RequestLog(CollectorRegistry(), fd=devnull.fileno(), max_bytes=1 << 40)

        def thousand() -> None:  # then a flush empties the buffer, as the timer does a few times a second
            for _ in range(1_000):
                log.settled(None, record)
            log._buffer.clear()

        buffered = min(timeit.repeat(thousand, number=N // 1_000, repeat=5)) / N
    clock = UtcClock()
    logger = logging.getLogger("bench.request_log")
    logger.propagate = False
    handler = Discard()
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    through_logging = min(timeit.repeat(lambda: logger.info("%s", record_fields(record, clock)),
                                        number=N // 4, repeat=5)) / (N // 4)
    print(f"request line, buffered (orjson into a bytearray): {buffered * 1e6:.2f} us per request")
    print(f"the same line through logging (LogRecord + formatter): {through_logging * 1e6:.2f} us per request")


if __name__ == "__main__":
    main()
