"""Channels to the party agents, and the calls the coordinator makes on them.

Archive streams are relayed as raw bytes: the coordinator's and the agent's import/export
messages share one wire layout, so chunks pass through without being decoded or re-encoded.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import grpc

from fate_registry.agent.v1 import agent_pb2, agent_pb2_grpc
from fate_registry.channels import OPERATION_ID_KEY, open_channel
from fate_registry.config import ServiceConf
from fate_registry.errors import Reason, RegistryError, from_rpc_error
from fate_registry.v1.common_pb2 import PartyModelInfo, PartyModelRef

_SERVICE = "/fate_registry.agent.v1.PartyAgentService/"


class AgentClients:
    def __init__(self, conf: ServiceConf) -> None:
        self.conf = conf
        self._lock = threading.Lock()
        self._channels: dict[str, grpc.Channel] = {}
        self._stubs: dict[str, agent_pb2_grpc.PartyAgentServiceStub] = {}

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()
            self._stubs.clear()

    def channel(self, party_id: str) -> grpc.Channel:
        party = self.conf.parties.get(party_id)
        if party is None:
            raise RegistryError(
                Reason.UNKNOWN_PARTY,
                f"party {party_id} is not part of this federation (configured: {', '.join(sorted(self.conf.parties))})",
                {"party_id": party_id},
            )
        with self._lock:
            if party_id not in self._channels:
                self._channels[party_id] = open_channel(str(party.address), self.conf.coordinator.tls)
            return self._channels[party_id]

    def stub(self, party_id: str) -> agent_pb2_grpc.PartyAgentServiceStub:
        """The party's stub, made once: a stub builds a callable per RPC of the service."""
        stub = self._stubs.get(party_id)
        if stub is None:
            stub = agent_pb2_grpc.PartyAgentServiceStub(self.channel(party_id))
            with self._lock:
                stub = self._stubs.setdefault(party_id, stub)
        return stub

    @staticmethod
    def metadata(operation_id: str) -> tuple[tuple[str, str], ...]:
        return ((OPERATION_ID_KEY, operation_id),)

    def unary(self, party_id: str, method: str, request: Any, operation_id: str, timeout: float) -> Any:
        """One call of PartyAgentService ``method`` on a party, its failure as a RegistryError naming the party."""
        call = getattr(self.stub(party_id), method)
        try:
            return call(request, timeout=timeout, metadata=self.metadata(operation_id))
        except grpc.RpcError as exc:
            raise party_error(exc, party_id) from None

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
        call = self.channel(party_id).stream_unary(
            _SERVICE + "ImportModel",
            request_serializer=None,
            response_deserializer=agent_pb2.ImportModelResponse.FromString,
        )
        try:
            response: agent_pb2.ImportModelResponse = call(messages, metadata=self.metadata(operation_id))
        except grpc.RpcError as exc:
            raise party_error(exc, party_id) from None
        return response

    def export_raw(self, party_id: str, request: agent_pb2.ExportModelRequest, operation_id: str) -> Iterator[bytes]:
        call = self.channel(party_id).unary_stream(
            _SERVICE + "ExportModel",
            request_serializer=agent_pb2.ExportModelRequest.SerializeToString,
            response_deserializer=None,
        )
        stream = call(request, metadata=self.metadata(operation_id))
        try:
            yield from stream
        except grpc.RpcError as exc:
            raise party_error(exc, party_id) from None
        finally:
            stream.cancel()  # type: ignore[no-untyped-call]


def ref_of(info: PartyModelInfo) -> PartyModelRef:
    return PartyModelRef(
        role=info.role, party_id=info.party_id, model_id=info.model_id, model_version=info.model_version
    )


def party_error(exc: grpc.RpcError, party_id: str) -> RegistryError:
    """The agent's own error, or a transport failure that names the party."""
    error = from_rpc_error(exc, context=f"party {party_id} did not answer")
    return RegistryError(error.reason, error.message, {**error.metadata, "party_id": party_id}, error.retcode)
