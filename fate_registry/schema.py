"""The building blocks of the configuration schemas (pydantic v2): sections, value types, and one
sentence for whatever a conf got wrong.

A :class:`Section` is a mapping of a conf file whose keys are the fields of a pydantic dataclass; a key
that is no field is refused with the nearest valid name, and an empty (null) section takes every
default. The value types accept what YAML or JSON users write (``9999`` for a party id) and refuse the
rest with a sentence of their own. :func:`explain` turns a :class:`~pydantic.ValidationError` into the
dotted key and that sentence, never pydantic's report or a secret.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, SecretStr, StrictBool, ValidationError, model_validator
from pydantic_core import ErrorDetails, PydanticCustomError

SECTION = ConfigDict(extra="forbid")
"""The config of every section's dataclass: a key that is no field is an error."""


def conf_error(problem: str, key: str = "") -> PydanticCustomError:
    """A validation error saying ``problem``; ``key`` names the sub-key at fault when a whole section is checked."""
    return PydanticCustomError("conf", "{problem}", {"problem": problem, "key": key})


class Section:
    """The base of every section: refuses unknown keys naming the nearest known one; null is empty."""

    __pydantic_fields__: dict[str, Any]

    @model_validator(mode="before")
    @classmethod
    def _known_keys_only(cls, data: Any) -> Any:
        if data is None:
            return {}
        if isinstance(data, Mapping):
            known = sorted(field.alias or name for name, field in cls.__pydantic_fields__.items())
            for key in map(str, data):
                if key not in known:
                    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                    hint = f"; did you mean {close[0]}?" if close else f" (known: {', '.join(known)})"
                    raise conf_error(f"unknown key{hint}", key)
        return data


def _text(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise conf_error(f"expected a string, got {type(value).__name__}")
    return str(value)


def optional_path(value: Any) -> Path | None:
    """A path; empty or null is None (the default the program derives)."""
    if isinstance(value, Path):
        return value
    return Path(text) if value is not None and (text := _text(value)) else None


def _secret(value: Any) -> SecretStr:
    return value if isinstance(value, SecretStr) else SecretStr(_text(value))


def _positive(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise conf_error(f"expected a positive number, got {value!r}")
    return float(value)


def list_of(what: str) -> BeforeValidator:
    """A YAML list of strings (or whole numbers, read as strings) as a tuple; null is empty."""

    def check(value: Any) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list | tuple) or any(
            isinstance(v, bool) or not isinstance(v, str | int) for v in value
        ):
            raise conf_error(f"expected a list of {what}")
        return tuple(map(str, value))

    return BeforeValidator(check)


Text = Annotated[str, BeforeValidator(_text)]
"""A string; a whole number (a party id, a port written bare) is read as its digits."""
Secret = Annotated[SecretStr, BeforeValidator(_secret)]
"""A password or secret key: out of every repr, log line and message."""
OptionalPath = Annotated[Path | None, BeforeValidator(optional_path)]
"""A file or directory; empty or null means the default the program derives."""
Seconds = Annotated[float, BeforeValidator(_positive)]
Flag = StrictBool
Names = Annotated[tuple[str, ...], list_of("names")]


def _mapping_problem(error: ErrorDetails) -> str:
    return f"expected a mapping, got {type(error['input']).__name__}"


def _choices(error: ErrorDetails) -> str:
    """The values a ``Literal`` allows, from pydantic's ``'a', 'b' or 'c'``."""
    return ", ".join(re.findall(r"'([^']*)'", str(error.get("ctx", {}).get("expected", ""))))


_PROBLEMS: dict[str, Callable[[ErrorDetails], str]] = {
    "missing": lambda e: "is required",
    "dict_type": _mapping_problem,
    "dataclass_type": _mapping_problem,
    "model_type": _mapping_problem,
    "bool_type": lambda e: f"expected true or false, got {e['input']!r}",
    "int_type": lambda e: f"expected an integer, got {e['input']!r}",
    "greater_than_equal": lambda e: f"must be at least {e.get('ctx', {}).get('ge')}, got {e['input']}",
    "literal_error": lambda e: f"expected one of {_choices(e)}, got {e['input']!r}",
}


def explain(error: ValidationError) -> tuple[str, str]:
    """The dotted key and the problem of the first fault in ``error``, in the words of a conf's reader."""
    first = error.errors(include_url=False)[0]
    context = first.get("ctx", {})
    parts = [str(part) for part in first["loc"] if part != "[key]"]
    if context.get("key"):
        parts.append(str(context["key"]))
    describe = _PROBLEMS.get(first["type"])
    return ".".join(parts), describe(first) if describe else first["msg"]
