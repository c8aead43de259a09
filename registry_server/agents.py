"""The calls the coordinator makes on the party agents, over each party's transport.

Archive streams are relayed as raw bytes: the coordinator's and the agent's import/export
messages share one wire layout, so chunks pass through without being decoded or re-encoded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

from fate_registry import metrics
from fate_registry.agent.v1 import agent_pb2
from fate_registry.channels import OPERATION_ID_KEY
from fate_registry.config import PartyConf, ServiceConf
from fate_registry.errors import Reason, RegistryError
from fate_registry.v1.common_pb2 import PartyModelInfo, PartyModelRef
from registry_server.agent_rpc import AgentRpc, Req, Resp, Rpc
from registry_server.transport import DirectTransport, PacketTransport, Transport

# A call that failed with one of these got no answer from the agent; any other answer, even a refusal, is one.
NO_ANSWER = frozenset({Reason.PARTY_UNAVAILABLE, Reason.DEADLINE_EXCEEDED})


class AgentCaller(Protocol):
    """The unary calls on the agents, as the coordinator's operations make them.

    :class:`AgentClients`; an in-memory fake in the unit tests of the two-phase engine.
    """

    def call(self, party_id: str, rpc: Rpc[Req, Resp], request: Req, operation_id: str, timeout: float) -> Resp: ...


class AgentClients:
    """The coordinator's calls on the agents, each through its party's route (DESIGN §7).

    ``site_of`` names the party whose agent holds the migrated slices of a party id that is not one of
    the federation's (:meth:`Catalog.site_of`): calls for such a party go to that agent.
    """

    def __init__(self, conf: ServiceConf, site_of: Callable[[str], str | None] = lambda party_id: None) -> None:
        self.conf = conf
        self.site_of = site_of
        self._lock = threading.Lock()
        self._transports: dict[str, Transport] = {}
        self.last_answer: dict[str, float] = {}
        """When each configured party's agent last answered a unary call or an import (epoch seconds)."""

    def close(self) -> None:
        with self._lock:
            for transport in self._transports.values():
                transport.close()
            self._transports.clear()

    def party(self, party_id: str) -> PartyConf:
        """The conf of the agent that acts for ``party_id``.

        Its own, or that of the site holding its migrated slices; an unknown party fails.
        """
        party = self.conf.parties.get(party_id)
        site = None if party is not None else self.site_of(party_id)
        if site is not None:
            party = self.conf.parties.get(site)
        if party is None:
            raise RegistryError(
                Reason.UNKNOWN_PARTY,
                f"party {party_id} is not part of this federation (configured: {', '.join(sorted(self.conf.parties))})",
                {"party_id": party_id},
            )
        return party

    def transport(self, party_id: str) -> Transport:
        """The route to the agent acting for ``party_id``: direct, or Packets through its proxy."""
        return self._route(self.party(party_id))

    def _route(self, party: PartyConf) -> Transport:
        with self._lock:
            if party.party_id not in self._transports:
                self._transports[party.party_id] = self._open(party)
            return self._transports[party.party_id]

    def _open(self, party: PartyConf) -> Transport:
        coordinator = self.conf.coordinator
        if party.proxy is None:
            return DirectTransport(party.party_id, party.address, coordinator.tls, coordinator.call_timeout)
        return PacketTransport(
            coordinator.party_id,
            party.party_id,
            party.proxy,
            coordinator.call_timeout,
            coordinator.deploy_timeout,
            coordinator.tls,
        )

    def behind_proxy(self, party_id: str) -> bool:
        return self.party(party_id).proxy is not None

    @staticmethod
    def metadata(operation_id: str) -> dict[str, str]:
        return {OPERATION_ID_KEY: operation_id}

    def call(self, party_id: str, rpc: Rpc[Req, Resp], request: Req, operation_id: str, timeout: float) -> Resp:
        """One unary call of ``rpc`` on a party, its answer typed; its failure a RegistryError naming the party."""
        site = self.party(party_id)
        with metrics.party_call(party_id), self._answering(site.party_id):
            answer = self._route(site).unary(
                rpc.path, request.SerializeToString(), self.metadata(operation_id), timeout
            )
        return rpc.response.FromString(answer)

    @contextmanager
    def _answering(self, site: str) -> Iterator[None]:
        """Note when the agent of ``site`` answers the call made inside (a refusal is an answer too)."""
        try:
            yield
        except RegistryError as exc:
            if exc.reason not in NO_ANSWER:
                self.last_answer[site] = time.time()
            raise
        self.last_answer[site] = time.time()

    def party_info(self, ref: PartyModelRef) -> PartyModelInfo:
        """A party's own account of one of its versions: every column, from its Pipeline and manifest."""
        return party_info(self, ref.party_id, ref, self.conf.coordinator.call_timeout)

    def import_raw(self, party_id: str, messages: Iterator[bytes], operation_id: str) -> agent_pb2.ImportModelResponse:
        rpc = AgentRpc.IMPORT_MODEL
        site = self.party(party_id)
        with metrics.party_call(party_id), self._answering(site.party_id):
            answer = self._route(site).client_stream(rpc.path, messages, self.metadata(operation_id))
        return rpc.response.FromString(answer)

    def export_raw(self, party_id: str, request: agent_pb2.ExportModelRequest, operation_id: str) -> Iterator[bytes]:
        """The agent's export stream, counted as one call to the party once it ends (or fails, or is dropped)."""
        with metrics.party_call(party_id):
            yield from self.transport(party_id).server_stream(
                AgentRpc.EXPORT_MODEL.path, request.SerializeToString(), self.metadata(operation_id)
            )


def party_info(agents: AgentCaller, site: str, ref: PartyModelRef, timeout: float) -> PartyModelInfo:
    """A party's own account of a version, asked of the agent of ``site`` (which holds it)."""
    return agents.call(site, AgentRpc.GET_MODEL_INFO, agent_pb2.GetModelInfoRequest(model=ref), "", timeout).info


def ref_of(info: PartyModelInfo) -> PartyModelRef:
    """The reference of the version ``info`` describes."""
    return PartyModelRef(
        role=info.role, party_id=info.party_id, model_id=info.model_id, model_version=info.model_version
    )
