"""The health page's verdict per party, rendered from a conf (no federation: nothing answers on these ports)."""

from __future__ import annotations

import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from fate_registry import config
from registry_server.dashboard.pages import health


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_party_behind_a_proxy_is_not_shown_down(tmp_path: Path) -> None:
    """Its agent is reached only through FATE's proxy, which the health check does not cross."""
    port = _closed_port()
    conf = config.parse(
        {
            "coordinator": {"address": "127.0.0.1:0"},
            "parties": {
                "9999": {"address": f"127.0.0.1:{port}"},
                "10000": {"address": "10.0.0.2:9461", "proxy": f"127.0.0.1:{port}"},
            },
        },
        data_dir=tmp_path,
    )
    registry = cast(Any, SimpleNamespace(servicer=SimpleNamespace(agents=SimpleNamespace(conf=conf))))
    page = health(registry, "test", {}).decode()
    row_9999, row_10000 = (page.split(f"<td>{party}</td>", 1)[1].split("</tr>", 1)[0] for party in ("9999", "10000"))
    assert ">down<" in row_9999
    assert "down" not in row_10000 and f"behind the proxy 127.0.0.1:{port}, not probed" in row_10000
