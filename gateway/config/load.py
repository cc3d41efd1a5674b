"""Reading a YAML config file into a validated `Config`, or one `ConfigError` that names the
place of the first problem in the file (`models.x.routes[1].provider`) and what would fix it."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from gateway.config.env import substitute
from gateway.config.fields import PROBLEM
from gateway.config.schema import Config
from gateway.redact import scrub_keys


class ConfigError(ValueError):
    """A config value that cannot be used; the message names its place and the fix."""

    def __init__(self, place: str, problem: str) -> None:
        super().__init__(f"{place}: {problem}" if place else problem)
        self.place = place
        self.problem = problem


def load_config(path: str, env: Mapping[str, str] | None = None) -> Config:
    return load_config_text(read_config_text(path), path, env)


def read_config_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise ConfigError(path, f"cannot read the file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(path, "not UTF-8 text") from None


def load_config_text(text: str, source: str = "config", env: Mapping[str, str] | None = None) -> Config:
    """A config from YAML text, its ${VAR}s from `env` (this process's environment by default)."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(source, f"not valid YAML: {exc}") from None
    return parse_config(raw or {}, os.environ if env is None else env)


def parse_config(raw: Any, env: Mapping[str, str]) -> Config:
    try:
        return Config.model_validate(substitute(raw, env))
    except ValidationError as exc:
        raise _config_error(exc.errors(include_url=False)[0]) from None


def _config_error(error: ErrorDetails) -> ConfigError:
    ctx = error.get("ctx") or {}
    loc = [part for i, part in enumerate(error["loc"])
           if not (part in ("dedicated", "mock") and i == 2 and error["loc"][0] == "providers")]  # written flat
    place = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
    at = ctx.get("at", "")
    if at:
        place = place + at if at.startswith("[") or not place else f"{place}.{at}"
    # A value quoted back may be a secret put in the wrong place (`port: ${API_KEY}`): keys are masked.
    return ConfigError(place or "config", scrub_keys(ctx["problem"] if error["type"] == PROBLEM else _worded(error)))


def _worded(error: ErrorDetails) -> str:
    """Pydantic's own refusals, in the words of the rest of the file's errors."""
    kind, value = error["type"], error["input"]
    if kind == "literal_error":
        options = re.findall(r"'((?:[^'\\]|\\.)*)'", (error.get("ctx") or {}).get("expected", ""))
        return f"{value!r} is not one of: {', '.join(options)}"
    if kind in ("tuple_type", "list_type"):
        return f"expected a list, got {type(value).__name__}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping, got {type(value).__name__}"
    if kind == "string_type":
        return f"expected a string, got {type(value).__name__}"
    return error["msg"]
