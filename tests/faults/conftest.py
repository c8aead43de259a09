"""The fault suite's federation: a coordinator and three agents, each its own process, short deadlines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.state import PARTY_OF, TIMEOUTS
from tests.support.cluster import Cluster
from tests.support.services import RedisServer, redis_server


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Guest 9999, host 10000, arbiter 10001; stopped by PID on exit."""
    parties: dict[str, dict[str, Any]] = {party: {} for party in PARTY_OF.values()}
    with Cluster.start(tmp_path / "cluster", parties, TIMEOUTS) as started:
        yield started


ENGINE_PASSWORD = "engine-pw-not-to-be-shown"  # the tests check it never shows


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, the model store; stopped by PID on exit."""
    with redis_server(tmp_path / "redis", password=ENGINE_PASSWORD) as server:
        yield server


@pytest.fixture
def stored_cluster(tmp_path: Path, engine: RedisServer) -> Iterator[Cluster]:
    """The fault suite's federation with redis as the model store."""
    parties: dict[str, dict[str, Any]] = {party: {} for party in PARTY_OF.values()}
    store = {"model_store_address": {"storage": "redis", **engine.settings()}}
    with Cluster.start(tmp_path / "cluster", parties, TIMEOUTS, extra_conf=store) as started:
        yield started
