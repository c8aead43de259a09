"""The calls the coordinator makes on the party agents, over each party's transport.

Archive streams are relayed as raw bytes: the coordinator's and the agent's import/export
messages share one wire layout, so chunks pass through without being decoded or re-encoded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from google.protobuf.message import Message

from fate_registry import metrics
from fate_registry.agent.v1 import agent_pb2
from fate_registry.channels import OPERATION_ID_KEY
from fate_registry.config import PartyConf, ServiceConf
from fate_registry.errors import Reason, RegistryError
from fate_registry.v1.common_pb2 import PartyModelInfo, PartyModelRef
from registry_server.transport import DirectTransport, PacketTransport, Transport

_SERVICE = "/fate_registry.agent.v1.PartyAgentService/"
_METHODS = agent_pb2.DESCRIPTOR.services_by_name["PartyAgentService"].methods_by_name


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

    def close(self) -> None:
        with self._lock:
            for transport in self._transports.values():
                transport.close()
            self._transports.clear()

    def party(self, party_id: str) -> PartyConf:
        """The conf of the agent that acts for ``party_id``: its own, or that of the site holding its
        migrated slices; an unknown party fails."""
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
        party = self.party(party_id)
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

    def unary(self, party_id: str, method: str, request: Message, operation_id: str, timeout: float) -> Any:
        """One call of PartyAgentService ``method`` on a party, its failure as a RegistryError naming the party."""
        with metrics.party_call(party_id):
            answer = self.transport(party_id).unary(
                _SERVICE + method, request.SerializeToString(), self.metadata(operation_id), timeout
            )
        output = _METHODS[method].output_type.name
        return getattr(agent_pb2, output).FromString(answer)

    def party_info(self, ref: PartyModelRef) -> PartyModelInfo:
        """A party's own account of one of its versions: every column, from its Pipeline and manifest."""
        answer = self.unary(
            ref.party_id,
            "GetModelInfo",
            agent_pb2.GetModelInfoRequest(model=ref),
            "",
            self.conf.coordinator.call_timeout,
        )
        info: PartyModelInfo = answer.info
        return info

    def import_raw(self, party_id: str, messages: Iterator[bytes], operation_id: str) -> agent_pb2.ImportModelResponse:
        answer = self.transport(party_id).client_stream(_SERVICE + "ImportModel", messages, self.metadata(operation_id))
        return agent_pb2.ImportModelResponse.FromString(answer)

    def export_raw(self, party_id: str, request: agent_pb2.ExportModelRequest, operation_id: str) -> Iterator[bytes]:
        return self.transport(party_id).server_stream(
            _SERVICE + "ExportModel", request.SerializeToString(), self.metadata(operation_id)
        )


def ref_of(info: PartyModelInfo) -> PartyModelRef:
    return PartyModelRef(
        role=info.role, party_id=info.party_id, model_id=info.model_id, model_version=info.model_version
    )
