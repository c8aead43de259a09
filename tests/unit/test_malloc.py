"""Every process caps glibc's arenas, flow sets its thresholds too; an operator's MALLOC_* setting wins."""

from __future__ import annotations

import pytest

from fate_registry.malloc import tune_malloc

VARIABLES = ["MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"]


def test_servers_cap_the_arenas_and_flow_sets_the_thresholds_too(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert tune_malloc() == ["MALLOC_ARENA_MAX"]  # the test machines run glibc
    assert tune_malloc(transfer_client=True) == VARIABLES


@pytest.mark.parametrize("name", VARIABLES)
def test_the_operators_setting_wins(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    for other in VARIABLES:
        monkeypatch.delenv(other, raising=False)
    monkeypatch.setenv(name, "4")
    assert tune_malloc(transfer_client=True) == [v for v in VARIABLES if v != name]
