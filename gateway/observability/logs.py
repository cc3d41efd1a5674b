"""The gateway's own log: Python logging, uvicorn's lines included, as text or one JSON object a line.

`logging_config` is what `uvicorn.run(log_config=...)` applies in every worker, so that the
server's lines and the gateway's share one format and one level (`server.log`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from gateway.config import LogConfig

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def utc_iso(created: float) -> str:
    """A log record's time, ISO 8601 UTC with milliseconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created * 1000) % 1000:03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message (and the traceback, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {"time": utc_iso(record.created), "level": record.levelname.lower(), "logger": record.name,
               "message": record.getMessage()}
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(doc).decode()


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message`, the time in UTC like every other time the gateway shows."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return utc_iso(record.created)


def logging_config(config: LogConfig) -> dict[str, Any]:
    """A `logging.config.dictConfig` for the gateway and uvicorn: every line on stderr, in one format."""
    level = config.level.upper()
    formatter = JsonFormatter if config.format == "json" else TextFormatter
    server = {"handlers": ["stderr"], "level": level, "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"gateway": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "gateway",
                                "stream": "ext://sys.stderr"}},
        "loggers": {"uvicorn": server, "uvicorn.access": server},
        "root": {"handlers": ["stderr"], "level": level},
    }
