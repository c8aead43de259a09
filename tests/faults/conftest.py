"""The fault suite's federation: a coordinator and three agents, each its own process, short deadlines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fate_registry.testing.cluster import Cluster
from tests.faults.state import PARTY_OF, TIMEOUTS


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Guest 9999, host 10000, arbiter 10001; stopped by PID on exit."""
    parties: dict[str, dict[str, Any]] = {party: {} for party in PARTY_OF.values()}
    with Cluster.start(tmp_path / "cluster", parties, TIMEOUTS) as started:
        yield started
