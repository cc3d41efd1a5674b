"""A Redis that stalls or dies under load: clients get a quick 503 while it cannot answer, every
request answered is recorded exactly once, and nothing stays held once it answers again."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid

import httpx

from tests.faults.conftest import KEY, Invariants, fault_config
from tests.gateway_process import GatewayProcess
from tests.waiting import wait_until

PAUSE_S = 10.0


class Load:
    """Four clients sending requests back to back until stopped; every answer's id and status kept."""

    def __init__(self, gw: GatewayProcess) -> None:
        self._gw = gw
        self.results: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client) for _ in range(4)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def statuses(self) -> list[int]:
        return [status for _, status in self.results]

    def _client(self) -> None:
        with httpx.Client(base_url=self._gw.base_url, timeout=30) as client:
            while not self._stop.is_set():
                request_id = uuid.uuid4().hex
                answer = client.post("/chat/completions", json={
                    "model": "ok", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8},
                    headers={"authorization": f"Bearer {KEY}", "x-request-id": request_id})
                self.results.append((request_id, answer.status_code))


def test_redis_paused_under_load_leaves_nothing_held_once_it_answers_again(hostile, steady, redis_process) -> None:
    with GatewayProcess(fault_config(hostile, steady, redis_process.url)) as gw:
        check = Invariants(gw, redis_process.url)
        with Load(gw) as load:
            wait_until(lambda: len(load.results) >= 50, 30, "traffic under way")
            os.kill(redis_process.pid, signal.SIGSTOP)
            paused_at = time.monotonic()
            try:
                wait_until(lambda: time.monotonic() - paused_at >= PAUSE_S and 503 in load.statuses(),
                           PAUSE_S + 10, "the pause, seen by clients")
            finally:
                os.kill(redis_process.pid, signal.SIGCONT)
            resumed = len(load.results)
            wait_until(lambda: load.statuses()[resumed:].count(200) >= 50, 30, "traffic served again")
        check.hold(timeout_s=30)  # reservations, in-flight, memory, and a fresh request
        statuses = load.statuses()
        assert set(statuses) <= {200, 503}, set(statuses)
        served = sorted(request_id for request_id, status in load.results if status == 200)
        asked = {request_id for request_id, _ in load.results}
        recorded = sorted(r.request_id for r in check.record_list() if r.request_id in asked)
        assert recorded == served  # every answered request recorded, once; nothing refused recorded
        assert check.leased() > 0  # admitted from leases too, before, during and after the pause
        assert check.settled_together() > 0  # and settled in shared calls, retried ones included


def test_redis_killed_and_restarted_under_load_recovers_without_a_restart(hostile, steady, redis_process) -> None:
    with GatewayProcess(fault_config(hostile, steady, redis_process.url)) as gw:
        check = Invariants(gw, redis_process.url)
        with Load(gw) as load:
            wait_until(lambda: len(load.results) >= 50, 30, "traffic under way")
            redis_process.stop()
            down = len(load.results)
            wait_until(lambda: load.statuses()[down:].count(503) >= 20, 30, "503s while Redis is gone")
            redis_process.start()
            back = len(load.results)
            wait_until(lambda: load.statuses()[back:].count(200) >= 50, 30, "traffic served again")
        assert set(load.statuses()) <= {200, 503}
        check.hold(timeout_s=30)
