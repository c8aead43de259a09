"""docs/configuration.md's key tables and the schema of ``service_conf.yaml`` say the same: every key of the
schema is documented, every documented key is in the schema, and each documented default is the schema's."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from pydantic import SecretStr

from fate_registry import config
from party_agent.storage.config import CosConfigSettings, MySQLConfig, RedisConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
# Sections documented in tables of their own, wherever they appear; the model store's keys are its engine's.
SHARED = {config.TlsConf: "### TLS keys", config.DatabaseConf: "### Database keys", config.ModelStoreConf: None}
ENGINES: dict[str, Any] = {"mysql": MySQLConfig, "redis": RedisConfig, "tencent_cos": CosConfigSettings}


def _table(heading: str) -> dict[str, list[str]]:
    """The first table after ``heading``: the first cell's backquoted key -> the other cells."""
    text = DOC.read_text(encoding="utf-8")
    lines = text[text.index(heading + "\n") :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows: dict[str, list[str]] = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = cells[1:]
    return rows


def _section(annotation: Any) -> Any:
    for candidate in (annotation, *get_args(annotation)):
        if hasattr(candidate, "__pydantic_fields__"):
            return candidate
    return None


def _keys(schema: Any, prefix: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(dotted key, its default, its section type or None) of every key, shared sections not entered."""
    for name, field in schema.__pydantic_fields__.items():
        key, default = prefix + (field.alias or name), field.get_default(call_default_factory=True)
        nested = _section(field.annotation)
        party = get_args(field.annotation)[-1] if name == "parties" else None
        if nested in SHARED or nested is None:
            yield key, default, nested
        elif party is not None:
            yield key, default, None
            yield from _keys(party, f"{key}.<id>.")
        else:
            yield from _keys(nested, f"{key}.")


def _plain(value: Any) -> Any:
    """A default as YAML would write it."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Path | config.Address):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, dict):
        return {str(k): {} if v == type(v)() else _plain(v) for k, v in value.items()}
    return value


def _check(schema: Any, heading: str) -> None:
    documented = _table(heading)
    keys = list(_keys(schema))
    assert [key for key, _, _ in keys if key not in documented] == [], f"keys missing from {heading}"
    assert sorted(set(documented) - {key for key, _, _ in keys}) == [], f"{heading} names keys the schema has not"
    for key, default, nested in keys:
        cell = documented[key][0]
        if nested is not None and nested is not config.ModelStoreConf:
            continue  # a shared section: its keys are checked in its own table
        if cell.startswith("*derived*"):
            assert default in (None, ""), f"{key}: documented as derived, but the schema's default is {default!r}"
            continue
        literal = re.match(r"`([^`]*)`", cell)
        assert literal, f"{key}: the default {cell!r} is neither a `literal` nor *derived*"
        assert yaml.safe_load(literal.group(1)) == _plain(default), (key, cell, default)


@pytest.mark.parametrize(
    ("schema", "heading"),
    [(config.ServiceFile, "## Keys"), (config.TlsConf, "### TLS keys"), (config.DatabaseConf, "### Database keys")],
)
def test_the_key_tables_are_the_schema(schema: Any, heading: str) -> None:
    _check(schema, heading)


def test_the_model_store_table_is_the_engines_schemas() -> None:
    documented = _table("## Model stores")
    assert set(documented) == set(get_args(config.ModelStoreConf.__pydantic_fields__["storage"].annotation))
    for storage, engine in ENGINES.items():
        required, optional = documented[storage]
        named_required = re.findall(r"`(\w+)`", required)
        named_optional = dict(re.findall(r"`(\w+)`(?: \((?:each )?`([^`]*)`)?", optional))
        fields = {field.alias or name: field for name, field in engine.__pydantic_fields__.items()}
        assert sorted(named_required) == sorted(k for k, f in fields.items() if f.is_required()), storage
        assert sorted(named_optional) == sorted(k for k, f in fields.items() if not f.is_required()), storage
        last = ""  # "`A`, `B` (each `null`)": a default written once for a list of keys
        for key in reversed(list(named_optional)):
            last = named_optional[key] or last
            assert yaml.safe_load(last) == _plain(fields[key].get_default()), (storage, key)
