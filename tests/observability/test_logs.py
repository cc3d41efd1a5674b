"""The gateway's own log: one format and one level for its lines and uvicorn's, as `server.log` says."""

from __future__ import annotations

import io
import logging
import logging.config

import httpx
import orjson
import pytest

from gateway.config import parse_config
from gateway.observability.logs import logging_config
from tests.gateway_process import GatewayProcess
from tests.waiting import wait_until


@pytest.fixture
def configured():
    saved = {name: (logger.handlers[:], logger.level, logger.propagate) for name, logger in
             [("", logging.getLogger()), ("uvicorn", logging.getLogger("uvicorn")),
              ("uvicorn.access", logging.getLogger("uvicorn.access"))]}

    def configure(log: dict) -> io.StringIO:
        logging.config.dictConfig(logging_config(parse_config({"server": {"log": log}}, {}).server.log))
        stream = io.StringIO()
        for name in ("", "uvicorn", "uvicorn.access"):
            for handler in logging.getLogger(name).handlers:
                handler.setStream(stream)
        return stream
    yield configure
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers, logger.propagate = handlers, propagate
        logger.setLevel(level)


def test_json_lines_carry_time_level_logger_and_message_for_gateway_and_uvicorn(configured) -> None:
    stream = configured({"format": "json", "level": "info"})

    logging.getLogger("gateway.exchange").warning("provider %s sent usage that cannot be billed", "novita")
    logging.getLogger("uvicorn.error").info("Application startup complete.")
    logging.getLogger("gateway.exchange").debug("not at info")

    first, second = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert {k: first[k] for k in ("level", "logger", "message")} == {
        "level": "warning", "logger": "gateway.exchange", "message": "provider novita sent usage that cannot be billed"}
    assert first["time"].endswith("Z") and len(first["time"]) == len("2026-12-01T09:14:03.512Z")
    assert (second["logger"], second["message"]) == ("uvicorn.error", "Application startup complete.")


def test_text_lines_read_time_level_logger_message(configured) -> None:
    stream = configured({"format": "text", "level": "warning"})

    logging.getLogger("gateway").info("quiet at warning")
    logging.getLogger("gateway").error("store unavailable")

    [line] = stream.getvalue().splitlines()
    assert line.endswith("Z ERROR gateway: store unavailable")


def test_the_old_log_level_still_sets_the_level_with_a_warning() -> None:
    config = parse_config({"server": {"log_level": "debug"}}, {})

    assert config.server.log.level == "debug"
    assert "server.log_level is deprecated; write server.log: {level: ...}" in config.warnings
    assert parse_config({"server": {"log_level": "debug", "log": {"level": "error"}}}, {}).server.log.level == "error"


def test_a_served_gateway_writes_uvicorn_and_its_own_lines_as_json() -> None:
    with GatewayProcess({"server": {"log": {"format": "json", "requests": False}}}) as gw:
        httpx.post(gw.base_url + "/chat/completions", json={"model": "none"})
        started = wait_until(lambda: "Application startup complete." in gw.log() and gw.log(), 5, "the startup line")

    docs = [orjson.loads(line) for line in started.splitlines()]  # every line parses: nothing else was written
    assert any(d["logger"] == "uvicorn.error" and d["message"] == "Application startup complete." for d in docs)
    assert any(d["logger"] == "gateway" and "without an API key" in d["message"] for d in docs)
