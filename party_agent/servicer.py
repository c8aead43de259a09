"""gRPC adaptor of :class:`PartyAgent`: messages in, messages out, nothing else."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from fate_registry.agent.v1 import agent_pb2, agent_pb2_grpc
from fate_registry.errors import Reason, RegistryError
from fate_registry.unimplemented import fill_unimplemented
from fate_registry.v1.common_pb2 import ManifestEntry, PartyModelInfo
from party_agent.metadata import PartyModelRecord
from party_agent.service import PartyAgent


def model_info(record: PartyModelRecord) -> PartyModelInfo:
    created = Timestamp()
    created.FromMilliseconds(record.create_time_ms)
    return PartyModelInfo(
        role=record.role,
        party_id=record.party_id,
        model_id=record.model_id,
        model_version=record.model_version,
        roles_json=record.roles_json,
        create_time=created,
        loaded_times=record.loaded_times,
        size_kib=record.size_kib,
        parent=record.parent,
        parent_info_json=record.parent_info_json,
        initiator_role=record.initiator_role,
        initiator_party_id=record.initiator_party_id,
        fate_version=record.fate_version,
        train_dsl_json=record.train_dsl_json,
        train_runtime_conf_json=record.train_runtime_conf_json,
        inference_dsl_json=record.inference_dsl_json,
        runtime_conf_on_party_json=record.runtime_conf_on_party_json,
        imported=record.imported,
        job_id=record.job_id,
        manifest_digest=record.manifest.digest,
        file_count=len(record.manifest.files),
        size_bytes=record.manifest.total_size,
    )


def _chunks(first_done: Iterator[agent_pb2.ImportModelRequest]) -> Iterator[bytes]:
    for message in first_done:
        if message.WhichOneof("payload") != "chunk":
            raise RegistryError(Reason.INVALID_ARGUMENT, "only the first message of an import may be a header")
        yield message.chunk


class AgentServicer(agent_pb2_grpc.PartyAgentServiceServicer):
    def __init__(self, agent: PartyAgent) -> None:
        self.agent = agent

    def ImportModel(
        self, request_iterator: Iterator[agent_pb2.ImportModelRequest], context: grpc.ServicerContext
    ) -> agent_pb2.ImportModelResponse:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("payload") != "header":
            raise RegistryError(Reason.MISSING_ARGUMENT, "an import starts with a header message")
        result = self.agent.import_archive(first.header, _chunks(request_iterator))
        return agent_pb2.ImportModelResponse(result=result)

    def ExportModel(
        self, request: agent_pb2.ExportModelRequest, context: grpc.ServicerContext
    ) -> Iterator[agent_pb2.ExportModelResponse]:
        for piece in self.agent.export_archive(request.model):
            if piece.header is not None:
                yield agent_pb2.ExportModelResponse(header=piece.header)
            elif piece.trailer is not None:
                yield agent_pb2.ExportModelResponse(trailer=piece.trailer)
            else:
                yield agent_pb2.ExportModelResponse(chunk=piece.chunk)

    def GetModelInfo(
        self, request: agent_pb2.GetModelInfoRequest, context: grpc.ServicerContext
    ) -> agent_pb2.GetModelInfoResponse:
        record = self.agent.record(request.model)
        manifest = [ManifestEntry(path=r.path, size=r.size, sha256=r.sha256) for r in record.manifest.files]
        return agent_pb2.GetModelInfoResponse(info=model_info(record), manifest=manifest)


fill_unimplemented(
    AgentServicer, agent_pb2.DESCRIPTOR.services_by_name["PartyAgentService"], agent_pb2_grpc.PartyAgentServiceServicer
)
