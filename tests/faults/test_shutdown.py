"""SIGTERM: what runs past the grace period is cut, its clients are told so, and its use is settled
before the gateway closes the store."""

from __future__ import annotations

import os
import signal
import threading
import uuid

import httpx
import orjson

from tests.faults.conftest import KEY, Invariants, fault_config
from tests.gateway_process import GatewayProcess
from tests.waiting import wait_until


class Client(threading.Thread):
    """One request held open by the gateway, read as it comes."""

    def __init__(self, gw: GatewayProcess, model: str, stream: bool) -> None:
        super().__init__()
        self.request_id = uuid.uuid4().hex
        self._args = (gw, model, stream)
        self.status = 0
        self.body = b""

    def run(self) -> None:
        gw, model, stream = self._args
        with httpx.stream("POST", gw.base_url + "/chat/completions", timeout=30,
                          headers={"authorization": f"Bearer {KEY}", "x-request-id": self.request_id},
                          json={"model": model, "stream": stream, "max_tokens": 64,
                                "messages": [{"role": "user", "content": "hi"}]}) as response:
            self.status = response.status_code
            for chunk in response.iter_bytes():
                self.body += chunk


def test_sigterm_cuts_what_outlives_the_grace_tells_each_client_and_settles_it(hostile, steady,
                                                                               redis_process) -> None:
    gw = GatewayProcess(fault_config(hostile, steady, redis_process.url, first_byte_s=30, idle_s=30,
                                   shutdown_grace_s=1)).start()
    check = Invariants(gw, redis_process.url)
    streams = [Client(gw, "slow-stream", stream=True) for _ in range(3)]  # 7 events, 0.5 s apart
    waiting = Client(gw, "hang", stream=False)  # an upstream that never answers
    try:
        for client in (*streams, waiting):
            client.start()
        wait_until(lambda: all(b'"content"' in c.body for c in streams) and len(hostile.served) >= 4, 10,
                   "every stream under way")
        os.kill(gw.pid, signal.SIGTERM)  # to the supervisor only, as a container runtime sends it
        gw.wait(20)
        for client in (*streams, waiting):
            client.join(10)
    finally:
        gw.stop()
    assert "Exception in ASGI application" not in gw.log()
    for client in streams:
        assert client.status == 200 and client.body.endswith(b"\n\n")  # whole events, not a cut body
        last = orjson.loads(client.body.rstrip().split(b"\n")[-1][5:])
        assert last["error"]["code"] == "gateway_shutdown"
    assert waiting.status == 503 and orjson.loads(waiting.body)["error"]["code"] == "gateway_shutdown", waiting.body
    records = check.records()
    for client in streams:
        record = records[client.request_id]
        assert (record.status, record.completion_tokens) == (503, client.body.count(b'"content"'))
        assert record.cost_nano > 0
    assert records[waiting.request_id].cost_nano == 0
    assert check.reservations() == 0 and not check.held()  # every lease given back at shutdown
    assert check.leased() > 0
