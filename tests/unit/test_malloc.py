"""Every process tunes glibc's malloc (arenas, thresholds); an operator's MALLOC_* setting wins."""

from __future__ import annotations

import pytest

from fate_registry.malloc import tune_malloc

VARIABLES = ["MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"]


def test_every_setting_is_applied_on_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert tune_malloc() == VARIABLES  # the test machines run glibc


@pytest.mark.parametrize("name", VARIABLES)
def test_the_operators_setting_wins(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    for other in VARIABLES:
        monkeypatch.delenv(other, raising=False)
    monkeypatch.setenv(name, "4")
    assert tune_malloc() == [v for v in VARIABLES if v != name]
