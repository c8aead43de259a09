"""The servers cap glibc's malloc arenas; an operator's MALLOC_ARENA_MAX wins."""

from __future__ import annotations

import pytest

from fate_registry.malloc import limit_arenas


def test_arenas_are_capped_on_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert limit_arenas() is True  # the test machines run glibc


def test_the_operators_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_arenas() is False
