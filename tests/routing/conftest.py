"""Fixtures of the routing tests.

`vllm_servers` (session) starts two real vLLM servers once for the whole run and kills
them at the end. Without them the `vllm` tests skip, saying why; with
GATEWAY_REQUIRE_REAL=1 they fail instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.routing.vllm_servers import VllmServer, VllmServers, vllm_environment


@pytest.fixture(scope="session")
def vllm_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServers]:
    required = os.environ.get("GATEWAY_REQUIRE_REAL") == "1"
    problem = vllm_environment(required)
    servers = None
    if problem is None:
        logs = tmp_path_factory.mktemp("vllm")
        servers = VllmServers([VllmServer(logs, i) for i in range(2)])
        try:
            servers.start()
        except RuntimeError as error:
            problem, servers = f"real vLLM servers did not start: {error}", None
    if servers is None:
        message = f"{problem} (run scripts/vllm-env.sh; GATEWAY_REQUIRE_REAL=1 turns this skip into a failure)"
        if required:
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield servers
    finally:
        servers.stop()
