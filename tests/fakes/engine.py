"""A fixed number of generation slots, and the vLLM /metrics text that reports their use.

Requests beyond capacity wait for a slot, as a vLLM scheduler queues them; the
gauges read the counts live, so a scrape never lags the way a real one does.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from .records import Bill


class Engine:
    def __init__(self, max_running: int | None) -> None:
        self.max_running = max_running
        self.running: Counter[str] = Counter()
        self.waiting: Counter[str] = Counter()
        self.alive = True
        self._slots: asyncio.Semaphore | None = None
        self._slots_loop: asyncio.AbstractEventLoop | None = None

    @asynccontextmanager
    async def slot(self, model: str) -> AsyncIterator[None]:
        """Hold one slot for `model` while the body runs; queue first when all are taken."""
        if self.max_running is not None:
            loop = asyncio.get_running_loop()
            if self._slots is None or self._slots_loop is not loop:  # a restart brings a new loop
                self._slots, self._slots_loop = asyncio.Semaphore(self.max_running), loop
            self.waiting[model] += 1
            try:
                await self._slots.acquire()
            finally:
                self.waiting[model] -= 1
        self.running[model] += 1
        try:
            yield
        finally:
            self.running[model] -= 1
            if self._slots is not None:
                self._slots.release()

    def kv_cache_usage(self) -> float:
        if not self.max_running:
            return 0.0
        return min(1.0, sum(self.running.values()) / self.max_running)

    def metrics_text(self, models: Iterable[str], ledger: Iterable[Bill]) -> str:
        """Prometheus text exposition of the load gauges and token counters, per model_name."""
        models = list(models)
        prompt: Counter[str] = Counter()
        generated: Counter[str] = Counter()
        for bill in ledger:
            prompt[bill.model] += bill.prompt_tokens
            generated[bill.model] += bill.completion_tokens
        kv = self.kv_cache_usage()
        families = [
            ("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.",
             lambda m: self.running[m]),
            ("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.",
             lambda m: self.waiting[m]),
            ("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.",
             lambda m: kv),
            ("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.",
             lambda m: prompt[m]),
            ("vllm:generation_tokens_total", "counter", "Number of generation tokens processed.",
             lambda m: generated[m]),
        ]
        lines: list[str] = []
        for name, kind, help_text, value in families:
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
            lines += [f'{name}{{model_name="{m}"}} {float(value(m))}' for m in models]
        return "\n".join(lines) + "\n"
