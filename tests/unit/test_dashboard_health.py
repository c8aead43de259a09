"""The health page rendered from a conf, with the coordinator's own agent clients (nothing answers on these ports)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from fate_registry import config
from registry_server.agents import AgentClients
from registry_server.dashboard.health import DEADLINE_SECONDS, health
from registry_server.fanout import FanOut


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Any]:
    port = _closed_port()
    conf = config.parse(
        {
            "coordinator": {"address": "127.0.0.1:0"},
            "parties": {
                "9999": {"address": f"127.0.0.1:{port}", "servings": [f"127.0.0.1:{port}"]},
                "10000": {"address": "10.0.0.2:9461", "proxy": f"127.0.0.1:{port}"},
            },
        },
        data_dir=tmp_path,
    )
    agents, fanout = AgentClients(conf), FanOut()
    try:
        yield cast(Any, SimpleNamespace(servicer=SimpleNamespace(agents=agents, fanout=fanout)))
    finally:
        fanout.close()
        agents.close()


def _row(page: str, party: str) -> str:
    return page.split(f"<td>{party}</td>", 1)[1].split("</tr>", 1)[0]


def test_parties_that_do_not_answer_are_down_with_their_message_within_the_deadline(registry: Any) -> None:
    """Both parties are asked at once; the one behind FATE's proxy is probed through it, not skipped."""
    start = time.monotonic()
    page = health(registry, "test", {}).decode()
    assert time.monotonic() - start < DEADLINE_SECONDS + 2
    direct, proxied = _row(page, "9999"), _row(page, "10000")
    assert ">down<" in direct and "never" in direct and "Traceback" not in page
    assert ">down<" in proxied and "via the proxy 127.0.0.1:" in proxied
    assert "not probed" not in page and "none configured" in page


def test_the_last_answer_is_kept_where_agent_calls_go(registry: Any) -> None:
    registry.servicer.agents.last_answer["9999"] = time.time()
    page = health(registry, "test", {}).decode()
    assert "never" not in _row(page, "9999") and time.strftime("%Y-%m-%d", time.gmtime()) in _row(page, "9999")
