"""Typed readers of raw config values: each names the place of a bad value and the fix."""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from gateway.config import ConfigError

T = TypeVar("T")


def expect_mapping(value: Any, place: str) -> None:
    if not isinstance(value, dict):
        raise ConfigError(place or "config", f"expected a mapping, got {type(value).__name__}")


def expect_list(value: Any, place: str) -> list:
    if not isinstance(value, list):
        raise ConfigError(place, f"expected a list, got {type(value).__name__}")
    return value


def no_unknown(raw: dict, place: str, allowed: set[str]) -> None:
    for key in raw:
        if key not in allowed:
            where = f"{place}.{key}" if place else str(key)
            raise ConfigError(where, f"unknown setting (allowed here: {', '.join(sorted(allowed))})")


def read_str(value: Any, place: str) -> str:
    if value is None:
        raise ConfigError(place, "missing; give a string")
    if isinstance(value, (dict, list)):
        raise ConfigError(place, f"expected a string, got {type(value).__name__}")
    return str(value)


def _number(value: Any, place: str, kind: Callable[[Any], T], word: str) -> T:
    if isinstance(value, bool):
        raise ConfigError(place, f"expected {word}, got {value!r}")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(place, f"expected {word}, got {value!r}") from None


def read_int(value: Any, place: str, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, float) and not value.is_integer():
        raise ConfigError(place, f"expected a whole number, got {value!r}")
    number = _number(value, place, int, "a whole number")
    _in_range(number, place, low, high)
    return number


def read_opt_int(value: Any, place: str) -> int | None:
    return None if value is None else read_int(value, place, 1)


def read_float(value: Any, place: str, low: float | None = None, high: float | None = None) -> float:
    number = _number(value, place, float, "a number")
    _in_range(number, place, low, high)
    return number


def _in_range(number: float, place: str, low: float | None, high: float | None) -> None:
    if (low is not None and number < low) or (high is not None and number > high):
        raise ConfigError(place, f"{number:g} is out of range [{low if low is not None else '-inf'}, "
                                 f"{high if high is not None else 'inf'}]")


def read_choice(value: Any, place: str, options: tuple[str, ...]) -> str:
    if value not in options:
        raise ConfigError(place, choice_problem(value, options))
    return value


def choice_problem(value: Any, options: tuple[str, ...]) -> str:
    return f"{value!r} is not one of: {', '.join(options)}"


def read_url(value: Any, place: str) -> str:
    url = read_str(value, place).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(place, f"{url!r} is not an http(s) URL")
    return url
