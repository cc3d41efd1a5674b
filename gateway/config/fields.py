"""The building blocks of the config schema: a section that refuses unknown settings, and
value types whose every refusal names the fix ("expected a whole number, got 'http'").

Values may arrive as strings (`port: "${PORT:-8080}"` is a string after substitution), so
numbers are parsed here; booleans are never taken for numbers, and NaN and infinity
never pass.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

from gateway.money import MAX_NANO, usd_to_nano
from gateway.redact import masked

PROBLEM = "config_problem"


def problem(message: str, at: str = "") -> PydanticCustomError:
    """A refusal with its own wording; `at` places it below where it was raised (`routes[1].provider`)."""
    return PydanticCustomError(PROBLEM, "{problem}", {"problem": message, "at": at})


class Section(BaseModel):
    """One mapping of the config file: frozen once read, unknown keys refused by name.

    Fields listed in `derived` are filled in by the parent (a provider's name is its key),
    never written by the user.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", coerce_numbers_to_str=True, allow_inf_nan=False,
                              populate_by_name=True)
    derived: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _known_settings(cls, raw: Any) -> Any:
        return cls.prepare(raw)

    @classmethod
    def prepare(cls, raw: Any, allowed: set[str] | None = None) -> Any:
        """The raw mapping checked for unknown and missing keys; subclasses may reshape it."""
        if raw is None:
            return {}
        if isinstance(raw, BaseModel):
            return raw
        if not isinstance(raw, dict):
            raise problem(f"expected a mapping, got {type(raw).__name__}")
        allowed = cls.settings() if allowed is None else allowed
        for key in raw:
            if key not in allowed and key not in cls.derived:
                raise problem(f"unknown setting (allowed here: {', '.join(sorted(allowed))})", at=str(key))
        for name, field in cls.model_fields.items():
            key = field.validation_alias if isinstance(field.validation_alias, str) else name
            if field.is_required() and key not in raw and name not in cls.derived:
                raise problem("missing; give a string" if field.annotation is str else "missing", at=key)
        return raw

    @classmethod
    def settings(cls) -> set[str]:
        """The keys a user may write in this section."""
        return {field.validation_alias if isinstance(field.validation_alias, str) else name
                for name, field in cls.model_fields.items() if name not in cls.derived}


def _number(value: Any, word: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise problem(f"expected {word}, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise problem(f"expected {word}, got {value!r}") from None
    if not math.isfinite(number):
        raise problem(f"expected a finite number, got {value!r}")
    return number


def _whole(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value)
    number = _number(value, "a whole number")
    if not number.is_integer():
        raise problem(f"expected a whole number, got {value!r}")
    return int(number)


def in_range(low: float | None = None, high: float | None = None) -> AfterValidator:
    """Refuse a number outside [low, high], naming both ends."""
    def check(number: float) -> float:
        if (low is not None and number < low) or (high is not None and number > high):
            raise problem(f"{number:g} is out of range [{'-inf' if low is None else f'{low:g}'}, "
                          f"{'inf' if high is None else f'{high:g}'}]")
        return number
    return AfterValidator(check)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise problem(f"expected true or false, got {value!r}")
    return value


def _url(value: str) -> str:
    url = value.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise problem(f"{masked(url)!r} is not an http(s) URL")
    if "@" in urlsplit(url).netloc:
        raise problem(f"{masked(url)!r} carries credentials, which would show wherever the URL does (logs, "
                      "/admin/routes, metrics); give the key as api_key, or as a header under headers")
    return url


def _storable(usd: float) -> float:
    # Amounts reach Redis's Lua as doubles: above 2^53 nano-dollars they stop being exact.
    if usd_to_nano(usd) > MAX_NANO:
        raise problem(f"{usd:g} USD is more than the store keeps exactly ({MAX_NANO / 1e9:,.0f} USD)")
    return usd


def _text(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        raise problem(f"expected a string, got {type(value).__name__}")
    return value


Whole = Annotated[int, BeforeValidator(_whole)]
Number = Annotated[float, BeforeValidator(lambda v: _number(v, "a number"))]
Flag = Annotated[bool, BeforeValidator(_flag)]
Text = Annotated[str, BeforeValidator(_text)]
Url = Annotated[str, BeforeValidator(_text), AfterValidator(_url)]
Usd = Annotated[float, BeforeValidator(lambda v: _number(v, "a number")), in_range(0), AfterValidator(_storable)]
Seconds = Annotated[float, BeforeValidator(lambda v: _number(v, "a number"))]


def nano(usd: float | None) -> int | None:
    return None if usd is None else usd_to_nano(usd)
