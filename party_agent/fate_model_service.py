"""FATE-Serving's own ModelService on the agent's port: ``modelTransfer`` and ``queryModel``.

A FATE-Serving instance, or any tool built on FATE-Serving's generated stubs, can fetch a model
from the registry and list what it holds the way it would from a peer serving.
"""

from __future__ import annotations

import json

import grpc

from fate_registry.errors import RegistryError
from fate_registry.fate import model_service_pb2 as ms
from fate_registry.fate.model_service_pb2_grpc import ModelServiceServicer
from fate_registry.unimplemented import fill_unimplemented
from party_agent.agent import PartyAgent
from party_agent.buffers import buffers, verified_base64
from party_agent.metadata import PartyModelRecord
from party_agent.model_cache import party_model_id_of, ref_of

SERVICE = ms.DESCRIPTOR.services_by_name["ModelService"]
MAX_CACHE_DATA = 48 * 1024 * 1024  # one answer carries the whole model: beyond this, use the HTTP transfer
MODEL_NULL, MODEL_SYNC_ERROR = 104, 130


def _summary(record: PartyModelRecord) -> str:
    return json.dumps(
        {
            "role": record.role,
            "partId": record.party_id,
            "tableName": record.model_version,
            "namespace": party_model_id_of(record.ref),
            "parent": record.parent,
            "manifestDigest": record.manifest.digest,
        }
    )


class FateModelService(ModelServiceServicer):
    """FATE-Serving's ModelService, answered from the agent's versions; other methods are UNIMPLEMENTED."""

    def __init__(self, agent: PartyAgent) -> None:
        self.agent = agent

    def _record(self, table_name: str, namespace: str) -> PartyModelRecord | None:
        try:
            return self.agent.record(ref_of(namespace, table_name))
        except RegistryError:
            return None

    def modelTransfer(
        self, request: ms.ModelTransferRequest, context: grpc.ServicerContext
    ) -> ms.ModelTransferResponse:
        record = self._record(request.tableName, request.namespace)
        if record is None:
            return ms.ModelTransferResponse(statusCode=MODEL_NULL, message="model not found")
        ref = record.ref
        directory = self.agent.cache.version_dir(ref)
        found = buffers(directory)
        size = sum(record.manifest.by_path()[b.path].size for b in found if b.path in record.manifest.by_path())
        if size * 4 // 3 > MAX_CACHE_DATA:
            return ms.ModelTransferResponse(
                statusCode=MODEL_SYNC_ERROR,
                message=f"the model has {size} bytes of buffers, too many for one message; pull it over HTTP",
            )
        with self.agent.cache.locks.read(self.agent.cache.lock_key(ref)):
            cache = {b.key: b"".join(verified_base64(directory, record.manifest, b)).decode() for b in found}
        return ms.ModelTransferResponse(
            statusCode=0,
            message="success",
            modelData=_summary(record).encode(),
            cacheData=json.dumps(cache).encode(),
        )

    def queryModel(self, request: ms.QueryModelRequest, context: grpc.ServicerContext) -> ms.QueryModelResponse:
        if request.queryType == 2:
            record = self._record(request.tableName, request.namespace)
            records = [record] if record is not None else []
        elif request.queryType == 0:
            records = self.agent.metadata.all_records()
        else:  # service ids are bound in FATE-Serving, not here
            records = []
        infos = [
            ms.ModelInfoEx(
                tableName=r.model_version,
                namespace=party_model_id_of(r.ref),
                content=_summary(r),
                index=i,
            )
            for i, r in enumerate(records)
        ]
        return ms.QueryModelResponse(retcode=0, message="success", modelInfos=infos)


fill_unimplemented(FateModelService, SERVICE, ModelServiceServicer)
