"""The federation's health page: every party's agent asked ``DescribeParty`` at once, the page within a deadline.

A party is up when its agent answers (directly, or through FATE's proxy for a party behind one); its latency is
the call's round trip less the time the agent says it spent answering (its probes of its FATE-Servings and model
store, each bounded by :data:`PROBE_MS`). Its last answer is when any call of the coordinator last got one
(:attr:`AgentClients.last_answer`). Addresses are shown as configured (host:port), the model store by its engine
only: never a credential.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp

from fate_registry.agent.v1 import agent_pb2
from fate_registry.config import PartyConf
from fate_registry.errors import RegistryError
from registry_server.agent_rpc import AgentRpc
from registry_server.agents import AgentClients
from registry_server.dashboard.html import marked, page, table, text
from registry_server.dashboard.view import Query, when
from registry_server.fate_http.calls import Registry

DEADLINE_SECONDS = 3.0
"""How long the page waits for any party (at most the coordinator's call timeout)."""
GIB = 1024**3
PROBE_MS = 1000
"""How long an agent's probe of one of its FATE-Servings or its model store may take."""


@dataclass(frozen=True)
class Described:
    """A party's answer to ``DescribeParty`` and the call's round trip in seconds."""

    answer: agent_pb2.DescribePartyResponse
    seconds: float


def health(registry: Registry, peer: str, query: Query) -> bytes:
    """Each party's agent: up or down, last answer, latency, versions held, disk, its FATE-Servings, model store."""
    agents = registry.servicer.agents
    conf = agents.conf
    deadline = min(DEADLINE_SECONDS, conf.coordinator.call_timeout)
    parties = list(conf.parties.values())
    described = registry.servicer.fanout.run([functools.partial(_describe, agents, p, deadline) for p in parties])
    rows = [_row(agents, party, answer) for party, answer in zip(parties, described, strict=True)]
    headers = [
        "party",
        "agent",
        "state",
        "last answer",
        "latency",
        "versions held",
        "disk free",
        "FATE-Serving",
        "model store",
    ]
    store = conf.model_store
    configured = f"{store.storage}, {'on' if conf.enable_model_store else 'off'}" if store else "none configured"
    return page(
        "Federation",
        table(headers, rows, "parties") + f"<h2>Model store</h2><p id='model-store'>{text(configured)}</p>",
    )


def _describe(agents: AgentClients, party: PartyConf, deadline: float) -> Described:
    start = time.perf_counter()
    request = agent_pb2.DescribePartyRequest(probe_timeout_ms=PROBE_MS)
    answer = agents.call(party.party_id, AgentRpc.DESCRIBE_PARTY, request, "", deadline)
    return Described(answer, time.perf_counter() - start)


def _row(agents: AgentClients, party: PartyConf, described: Described | RegistryError) -> list[str]:
    """The cells (HTML) of one party's row."""
    route = text(party.address) + (f" via the proxy {text(party.proxy)}" if party.proxy is not None else "")
    answered = agents.last_answer.get(party.party_id)
    last = text(when(Timestamp(seconds=int(answered)))) if answered is not None else "never"
    if isinstance(described, RegistryError):
        servings = ", ".join(text(s) for s in party.servings) or "none"
        state = f"{marked('down')} <span class='failed'>{text(described.message)}</span>"
        return [text(party.party_id), route, state, last, "", "", "", servings, ""]
    answer = described.answer
    latency = max(0.0, described.seconds * 1000 - answer.answer_ms)
    servings = "<br>".join(_reach(r) for r in answer.servings) or "none"
    store = _reach(answer.model_store) if answer.HasField("model_store") else "none configured"
    disk = f"{answer.disk_free_bytes / GIB:.1f} GiB of {answer.disk_total_bytes / GIB:.1f} GiB"
    return [
        text(party.party_id),
        route,
        marked("up"),
        last,
        text(f"{latency:.1f} ms"),
        text(answer.versions_held),
        text(disk),
        servings,
        store,
    ]


def _reach(reached: agent_pb2.Reachability) -> str:
    """A FATE-Serving or the model store: up, or down with the agent's message."""
    if reached.reachable:
        return f"{text(reached.target)} {marked('up')}"
    return f"{text(reached.target)} {marked('down')} {text(reached.message)}"
