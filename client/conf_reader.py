"""Reading FATE's ``-c`` conf files: JSON objects checked against a schema per kind of conf.

A schema is a pydantic dataclass (with :data:`FATE_CONF`) whose fields are the keys a command reads,
typed with the value types below; :meth:`Conf.read` applies FATE's checks (every required key present
and not null, or one error naming them all) and then the types, naming the conf file and the dotted key
of a bad value and never echoing a Python repr. Keys a schema does not name are left alone: FATE's confs
carry more than a command reads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args

from pydantic import BeforeValidator, ConfigDict, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

from fate_registry.errors import Reason, RegistryError, Retcode, missing_keys

Schema = TypeVar("Schema")


def failure(message: str, retcode: int = Retcode.ARGUMENT_ERROR) -> RegistryError:
    """A conf error as FATE's CLI reports it, with the ARGUMENT_ERROR retcode unless given."""
    return RegistryError(Reason.INVALID_ARGUMENT, message, retcode=retcode)


def json_type(value: Any) -> str:
    """How a JSON reader would name ``value``'s type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def parse_json(text: str, what: str) -> Any:
    """``text`` parsed, or a retcode-100 error naming ``what`` and the line and column of the fault."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise failure(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}", Retcode.EXCEPTION_ERROR
        ) from None


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of ``path``, or a retcode-100 error naming it."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise failure(f"{what} {path} does not exist", Retcode.EXCEPTION_ERROR) from None
    except UnicodeDecodeError:
        raise failure(f"{what} {path} is not UTF-8 text", Retcode.EXCEPTION_ERROR) from None
    except OSError as exc:
        raise failure(f"cannot read {what} {path}: {exc.strerror or exc}", Retcode.EXCEPTION_ERROR) from None


def _refuse(expected: str) -> PydanticCustomError:
    """The error that reads "<key> must be <expected>, got <the value's JSON type>"."""
    return PydanticCustomError("conf_value", "must be {expected}", {"expected": expected})


def is_text(value: Any) -> bool:
    """Whether ``value`` may stand where FATE expects text: a string or a whole number, not a bool."""
    return isinstance(value, str | int) and not isinstance(value, bool)


def _text(value: Any) -> str:
    if not is_text(value):
        raise _refuse("a string or a whole number")
    return str(value)


def _flag(value: Any) -> bool:
    if isinstance(value, bool) or (type(value) is int and value in (0, 1)):
        return bool(value)
    raise _refuse("true or false")


def _texts(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(is_text(v) for v in value):
        raise _refuse("a list of strings")
    return [str(v) for v in value]


Text = Annotated[str, BeforeValidator(_text)]
"""A string; ints (party ids, versions) become strings; absent or null is ``""`` (or missing when required)."""
Flag = Annotated[bool, BeforeValidator(_flag)]
"""A boolean; FATE's form encoding 0/1 is accepted too."""
Texts = Annotated[list[str], BeforeValidator(_texts)]
RoleMap = dict[str, Texts]
"""A role map ``{"guest": [9999], "host": ["10000"]}``, party ids as strings."""
FATE_CONF = ConfigDict(extra="ignore")
"""FATE's confs carry more keys than a command reads (``job_parameters.federated_mode``): they are left alone."""


def _section_of(annotation: Any) -> Any:
    """The conf object type of a field (``PartyRef`` of ``PartyRef | None``), or None."""
    for candidate in (annotation, *get_args(annotation)):
        if hasattr(candidate, "__pydantic_fields__"):
            return candidate
    return None


def _present(schema: Any, data: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of ``data`` that ``schema`` names, nested objects likewise; a null is an absent key, as to FATE."""
    present = {}
    for name, spec in schema.__pydantic_fields__.items():
        value = data.get(name)
        if value is not None:
            nested = _section_of(spec.annotation)
            present[name] = _present(nested, value) if nested and isinstance(value, Mapping) else value
    return present


_OBJECT_ERRORS = ("dict_type", "dataclass_type", "model_type")


@dataclass(frozen=True)
class Conf:
    """A ``-c`` conf file's JSON object; ``path`` is the file (None for a conf built in memory)."""

    data: Mapping[str, Any]
    path: Path | None = None

    def read(self, schema: type[Schema]) -> Schema:
        """The conf as ``schema``.

        FATE's check first (every required key present and not null, or one error naming every missing key, dotted),
        then each value's type, naming the file and the key.
        """
        try:
            return TypeAdapter(schema).validate_python(_present(schema, self.data))
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            missing = [".".join(map(str, e["loc"])) for e in errors if e["type"] == "missing"]
            if missing:
                raise missing_keys(missing) from None
            first = errors[0]
            expected = "an object" if first["type"] in _OBJECT_ERRORS else first.get("ctx", {}).get("expected")
            value = first["input"]
            where = (
                f"{self.path}: {'.'.join(map(str, first['loc']))}" if self.path else ".".join(map(str, first["loc"]))
            )
            if expected is None:
                raise failure(f"{where}: {first['msg']}") from None
            shown = f" ({json.dumps(value)})" if isinstance(value, (int, float)) else ""  # no secret, and says most
            raise failure(f"{where} must be {expected}, got {json_type(value)}{shown}") from None

    def file(self, name: str, missing: str) -> Path:
        """An existing file named ``name`` by the conf; ``missing`` starts the message when there is none.

        A relative path is tried against the current directory first (what a user at a shell
        means), then against the conf file's directory (so a conf kept next to its archive works
        from anywhere). FATE resolves it against its own project directory, which a client on
        another machine does not have.
        """
        raw = Path(name).expanduser()
        candidates = [raw] if raw.is_absolute() else [Path.cwd() / raw]
        if self.path is not None and not raw.is_absolute():
            candidates.append((self.path.parent / raw).absolute())
        for candidate in candidates:
            if candidate.exists():
                return candidate
        raise failure(f"{missing}{' or '.join(str(c) for c in candidates)}", Retcode.EXCEPTION_ERROR)


def read_conf(path: Path) -> Conf:
    """The ``-c`` conf at ``path``: missing, unreadable or invalid files are retcode-100 errors naming it."""
    data = parse_json(read_text(path, "the conf file"), f"the conf file {path}")
    if not isinstance(data, dict):
        raise failure(f"the conf file {path} must hold a JSON object, got {json_type(data)}", Retcode.EXCEPTION_ERROR)
    return Conf(data, path)
