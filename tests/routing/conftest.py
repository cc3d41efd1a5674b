"""Fixtures of the routing tests.

`vllm_servers` (session) starts two real vLLM servers once for the whole run and kills
them at the end. `vllm_tool_server` (session) starts, the first time a test asks for it,
one more with a tool parser, for the tests of tool calls only: the pool's servers keep
the arguments a plain deployment has. Without a vLLM environment the `vllm` tests skip,
saying why; with GATEWAY_REQUIRE_REAL=1 they fail instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.routing.vllm_servers import VLLM_TOOL_CALL_ARGS, VllmServer, VllmServers, vllm_environment


def _start_or_skip(tmp_path_factory: pytest.TempPathFactory,
                   make: Callable[[Path], list[VllmServer]]) -> VllmServers:
    """The servers `make` describes, started; else the test skips (or fails, when required)."""
    required = os.environ.get("GATEWAY_REQUIRE_REAL") == "1"
    problem = vllm_environment(required)
    if problem is None:
        servers = VllmServers(make(tmp_path_factory.mktemp("vllm")))
        try:
            servers.start()
            return servers
        except RuntimeError as error:
            problem = f"real vLLM servers did not start: {error}"
    message = f"{problem} (run scripts/vllm-env.sh; GATEWAY_REQUIRE_REAL=1 turns this skip into a failure)"
    if required:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def vllm_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServers]:
    servers = _start_or_skip(tmp_path_factory, lambda logs: [VllmServer(logs, str(i)) for i in range(2)])
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture(scope="session")
def vllm_tool_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    servers = _start_or_skip(tmp_path_factory, lambda logs: [VllmServer(logs, "tools", VLLM_TOOL_CALL_ARGS)])
    try:
        yield servers.servers[0]
    finally:
        servers.stop()
