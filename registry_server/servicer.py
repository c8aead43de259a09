"""The coordinator's RegistryService: validates, routes to the party agents, records, answers."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from fate_registry import faultpoints
from fate_registry.agent.v1 import agent_pb2
from fate_registry.errors import Reason, RegistryError, Retcode
from fate_registry.grpc_server import archive_handlers
from fate_registry.identity import validate_name
from fate_registry.malformed import parse
from fate_registry.unimplemented import fill_unimplemented
from fate_registry.v1 import registry_pb2, registry_pb2_grpc
from fate_registry.v1.common_pb2 import PartyModelInfo, PartyModelRef, PartyResult
from registry_server.agent_rpc import AgentRpc, Req, Resp, Rpc
from registry_server.agents import AgentClients, ref_of
from registry_server.catalog import Catalog, ModelFilter
from registry_server.deletes import DELETE
from registry_server.fanout import FanOut
from registry_server.multiparty import MultiParty
from registry_server.oplog import OperationLog
from registry_server.predict_dsl import predict_conf_template
from registry_server.required import REF_KEYS, refuse_missing
from registry_server.transfers import TransferDesk

SERVICE = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"]
# FATE-Flow answers "no model" for get-predict-dsl/conf with HTTP status 210.
NO_MODEL_RETCODE = 210
# FATE's ``flow tag list`` shows this many tags unless told otherwise.
DEFAULT_TAG_LIMIT = 10


def check_ref(ref: PartyModelRef) -> PartyModelRef:
    """Each key safe for a path (an empty one was refused with the request: :mod:`registry_server.required`)."""
    for f in REF_KEYS:
        validate_name(getattr(ref, f), f)
    return ref


def _ok(ref: PartyModelRef, message: str = "success") -> PartyResult:
    return PartyResult(role=ref.role, party_id=ref.party_id, retcode=0, retmsg=message)


class RegistryServicer(registry_pb2_grpc.RegistryServiceServicer):
    """The RegistryService: each RPC method, for gRPC and for the FATE-Flow HTTP routes alike."""

    def __init__(
        self, catalog: Catalog, agents: AgentClients, fanout: FanOut, transfers: TransferDesk, multiparty: MultiParty
    ) -> None:
        self.catalog = catalog
        self.agents = agents
        self.fanout = fanout
        self.transfers = transfers
        self.multiparty = multiparty
        self.oplog = OperationLog(catalog)

    # -- archives (raw relays, registered by raw_handlers) --------------------------------------

    def import_raw(
        self, request_iterator: Iterator[bytes], context: grpc.ServicerContext
    ) -> registry_pb2.ImportModelResponse:
        first_raw = next(request_iterator, None)
        first = parse(registry_pb2.ImportModelRequest.FromString, first_raw or b"")
        if first.WhichOneof("payload") != "header":
            raise RegistryError(Reason.MISSING_ARGUMENT, "an import starts with a header message")
        refuse_missing("ImportModel", first)  # its raw stream passes the interceptor unchecked
        ref = check_ref(first.header.target)
        self.agents.transport(ref.party_id)  # an unknown party fails before the upload starts

        def relay() -> Iterator[bytes]:
            assert first_raw is not None
            yield first_raw
            yield from request_iterator

        with self.oplog.track("import", context.peer(), ref.model_id, ref.model_version, ref) as op:
            response = self.agents.import_raw(ref.party_id, relay(), op.operation_id)
            faultpoints.reached("coordinator.import.answered")
            self.catalog.record_import(response.result)
            op.results.append(_ok(ref))
        return registry_pb2.ImportModelResponse(result=response.result)

    def export_raw(self, request: registry_pb2.ExportModelRequest, context: grpc.ServicerContext) -> Iterator[bytes]:
        ref = check_ref(request.model)
        self.agents.transport(ref.party_id)
        with self.oplog.track("export", context.peer(), ref.model_id, ref.model_version) as op:
            yield from self.agents.export_raw(
                ref.party_id, agent_pb2.ExportModelRequest(model=ref, stored=request.stored), op.operation_id
            )
            op.results.append(_ok(ref))
        self.multiparty.learn(ref)

    def raw_handlers(self) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
        return archive_handlers(
            self.import_raw, registry_pb2.ImportModelResponse, self.export_raw, registry_pb2.ExportModelRequest
        )

    def BeginTransfer(
        self, request: registry_pb2.BeginTransferRequest, context: grpc.ServicerContext
    ) -> registry_pb2.BeginTransferResponse:
        kind = request.WhichOneof("transfer")
        ref = check_ref(request.import_header.target if kind == "import_header" else request.export_model)
        self.agents.transport(ref.party_id)
        return self.transfers.begin(request, context.peer(), ref)

    def EndTransfer(
        self, request: registry_pb2.EndTransferRequest, context: grpc.ServicerContext
    ) -> registry_pb2.EndTransferResponse:
        return self.transfers.end(request)

    # -- model info -----------------------------------------------------------------------------

    def GetModelInfo(
        self, request: registry_pb2.GetModelInfoRequest, context: grpc.ServicerContext
    ) -> registry_pb2.GetModelInfoResponse:
        where = ModelFilter(request.model_id, request.model_version, request.role, request.party_id)
        rows = self.catalog.find(where)
        if not rows:
            self.transfers.raise_if_settling(where)  # an import in doubt may have made it: not "not found" yet
            rows = self.multiparty.adoption.adopt(where)  # a version the parties hold unbeknown to the catalog
        if not rows:
            raise RegistryError(
                Reason.MODEL_NOT_FOUND,
                "Query model info failed, cannot find model from db and local model files. "
                "Try use both model id and model version to query model info from local models.",
                retcode=100,
            )
        if not request.detail:
            return registry_pb2.GetModelInfoResponse(models=rows)
        return self._with_detail(rows)

    def _with_detail(self, rows: list[PartyModelInfo]) -> registry_pb2.GetModelInfoResponse:
        def fetch(row: PartyModelInfo) -> PartyModelInfo:
            info = self.agents.party_info(ref_of(row))
            info.loaded_times = max(info.loaded_times, row.loaded_times)  # the catalog counts loads too
            return info

        response = registry_pb2.GetModelInfoResponse()
        calls = [functools.partial(fetch, row) for row in rows]
        for row, result in zip(rows, self.fanout.run(calls), strict=True):
            if isinstance(result, RegistryError):
                response.models.append(row)
                response.failures.append(
                    PartyResult(
                        role=row.role,
                        party_id=row.party_id,
                        retcode=result.fate_retcode,
                        retmsg=result.message,
                        reason=result.reason.name,
                    )
                )
            else:
                response.models.append(result)
        return response

    def ListModelVersions(
        self, request: registry_pb2.ListModelVersionsRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ListModelVersionsResponse:
        versions, token = self.catalog.list_versions(request.model_id, request.page_size, request.page_token)
        return registry_pb2.ListModelVersionsResponse(versions=versions, next_page_token=token)

    # -- multi-party operations -----------------------------------------------------------------------

    def LoadModel(
        self, request: registry_pb2.LoadModelRequest, context: grpc.ServicerContext
    ) -> registry_pb2.LoadModelResponse:
        return self.multiparty.load(request, context.peer())

    def BindModel(
        self, request: registry_pb2.BindModelRequest, context: grpc.ServicerContext
    ) -> registry_pb2.BindModelResponse:
        return self.multiparty.bind(request, context.peer())

    def UnloadModel(
        self, request: registry_pb2.UnloadModelRequest, context: grpc.ServicerContext
    ) -> registry_pb2.UnloadModelResponse:
        return self.multiparty.unload(request, context.peer())

    def UnbindModel(
        self, request: registry_pb2.UnbindModelRequest, context: grpc.ServicerContext
    ) -> registry_pb2.UnbindModelResponse:
        return self.multiparty.unbind(request, context.peer())

    def MigrateModel(
        self, request: registry_pb2.MigrateModelRequest, context: grpc.ServicerContext
    ) -> registry_pb2.MigrateModelResponse:
        return self.multiparty.migrate(request, context.peer())

    def DeployModel(
        self, request: registry_pb2.DeployModelRequest, context: grpc.ServicerContext
    ) -> registry_pb2.DeployModelResponse:
        return self.multiparty.deploy(request, context.peer())

    # -- predict DSL and conf ------------------------------------------------------------------------

    def _serving_detail(self, model_id: str, model_version: str, role: str, party_id: str) -> PartyModelInfo:
        """FATE's lookup for get-predict-dsl/conf: the first guest or host row, its detail from the agent."""
        rows = self.multiparty.adoption.find(ModelFilter(model_id, model_version, role, party_id))
        if not rows:
            raise RegistryError(
                Reason.MODEL_NOT_FOUND,
                "No model found, please check if arguments are specified correctly.",
                retcode=NO_MODEL_RETCODE,
            )
        serving_rows = [r for r in rows if r.role in ("guest", "host")]
        if not serving_rows:
            raise RegistryError(
                Reason.MODEL_NOT_FOUND,
                "Cannot found guest or host model, please get predict dsl on guest or host.",
                retcode=NO_MODEL_RETCODE,
            )
        return self._with_detail(serving_rows[:1]).models[0]

    def GetPredictDsl(
        self, request: registry_pb2.GetPredictDslRequest, context: grpc.ServicerContext
    ) -> registry_pb2.GetPredictDslResponse:
        detail = self._serving_detail(request.model_id, request.model_version, request.role, request.party_id)
        return registry_pb2.GetPredictDslResponse(predict_dsl_json=detail.inference_dsl_json or "{}")

    def GetPredictConf(
        self, request: registry_pb2.GetPredictConfRequest, context: grpc.ServicerContext
    ) -> registry_pb2.GetPredictConfResponse:
        detail = self._serving_detail(request.model_id, request.model_version, request.role, request.party_id)
        conf = predict_conf_template(
            json.loads(detail.train_runtime_conf_json or "{}"),
            json.loads(detail.inference_dsl_json or "{}"),
            detail.model_id,
            detail.model_version,
        )
        return registry_pb2.GetPredictConfResponse(predict_conf_json=json.dumps(conf))

    # -- tags -----------------------------------------------------------------------------------------

    def _model_of_job(self, job_id: str) -> str:
        rows = self.multiparty.adoption.find(ModelFilter(model_version=job_id)) if job_id else []
        if not rows:
            raise RegistryError(
                Reason.MODEL_NOT_FOUND, f"Can not found model by job id: '{job_id}'.", retcode=Retcode.EXCEPTION_ERROR
            )
        return rows[0].model_id

    def ListModelTags(
        self, request: registry_pb2.ListModelTagsRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ListModelTagsResponse:
        self._model_of_job(request.job_id)
        tags, token = self.catalog.tags.tags_of(request.job_id, request.page_size, request.page_token)
        return registry_pb2.ListModelTagsResponse(tags=tags, next_page_token=token)

    def AddModelTag(
        self, request: registry_pb2.AddModelTagRequest, context: grpc.ServicerContext
    ) -> registry_pb2.AddModelTagResponse:
        model_id = self._model_of_job(request.job_id)
        with self.oplog.track("tag", context.peer(), model_id, request.job_id):
            message = self.catalog.tags.add(request.job_id, request.tag_name, model_id)
        return registry_pb2.AddModelTagResponse(retmsg=message)

    def RemoveModelTag(
        self, request: registry_pb2.RemoveModelTagRequest, context: grpc.ServicerContext
    ) -> registry_pb2.RemoveModelTagResponse:
        model_id = self._model_of_job(request.job_id)
        with self.oplog.track("untag", context.peer(), model_id, request.job_id):
            message = self.catalog.tags.remove(request.job_id, request.tag_name, model_id)
        return registry_pb2.RemoveModelTagResponse(retmsg=message)

    def CreateTag(
        self, request: registry_pb2.CreateTagRequest, context: grpc.ServicerContext
    ) -> registry_pb2.CreateTagResponse:
        return registry_pb2.CreateTagResponse(retmsg=self.catalog.tags.create(request.tag_name, request.tag_desc))

    def QueryTag(
        self, request: registry_pb2.QueryTagRequest, context: grpc.ServicerContext
    ) -> registry_pb2.QueryTagResponse:
        """Without ``with_model`` the tags whose name contains ``tag_name``.

        With it, every party's row of each model version carrying exactly that tag.
        """
        if not request.with_model:
            return registry_pb2.QueryTagResponse(tags=self.catalog.tags.matching(request.tag_name))
        rows = [
            row
            for version in self.catalog.tags.versions_of(request.tag_name)
            for row in self.multiparty.adoption.find(ModelFilter(model_version=version))
        ]
        return registry_pb2.QueryTagResponse(models=rows)

    def UpdateTag(
        self, request: registry_pb2.UpdateTagRequest, context: grpc.ServicerContext
    ) -> registry_pb2.UpdateTagResponse:
        message = self.catalog.tags.update(request.tag_name, request.new_tag_name, request.new_tag_desc)
        return registry_pb2.UpdateTagResponse(retmsg=message)

    def DeleteTag(
        self, request: registry_pb2.DeleteTagRequest, context: grpc.ServicerContext
    ) -> registry_pb2.DeleteTagResponse:
        return registry_pb2.DeleteTagResponse(retmsg=self.catalog.tags.destroy(request.tag_name))

    def ListTags(
        self, request: registry_pb2.ListTagsRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ListTagsResponse:
        return registry_pb2.ListTagsResponse(tags=self.catalog.tags.first(request.limit or DEFAULT_TAG_LIMIT))

    # -- checkpoints ----------------------------------------------------------------------------------

    def ListCheckpoints(
        self, request: registry_pb2.ListCheckpointsRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ListCheckpointsResponse:
        ref = check_ref(request.model)
        answer = self.agents.call(
            ref.party_id,
            AgentRpc.LIST_CHECKPOINTS,
            agent_pb2.ListCheckpointsRequest(model=ref, component_name=request.component_name),
            "",
            self.agents.conf.coordinator.call_timeout,
        )
        return registry_pb2.ListCheckpointsResponse(checkpoints=answer.checkpoints)

    def GetCheckpoint(
        self, request: registry_pb2.GetCheckpointRequest, context: grpc.ServicerContext
    ) -> registry_pb2.GetCheckpointResponse:
        ref = check_ref(request.model)
        forward = agent_pb2.GetCheckpointRequest(model=ref, component_name=request.component_name)
        step = request.WhichOneof("step")
        if step == "step_index":
            forward.step_index = request.step_index
        elif step == "step_name":
            forward.step_name = request.step_name
        answer = self.agents.call(
            ref.party_id, AgentRpc.GET_CHECKPOINT, forward, "", self.agents.conf.coordinator.call_timeout
        )
        return registry_pb2.GetCheckpointResponse(checkpoint=answer.checkpoint, models=dict(answer.models))

    def _on_party(
        self,
        kind: str,
        context: grpc.ServicerContext,
        ref: PartyModelRef,
        rpc: Rpc[Req, Resp],
        request: Req,
        timeout: float,
        settle: Callable[[Resp], object] | None = None,
        changes_version: bool = False,
    ) -> Resp:
        """One call to the party ``ref`` names, logged as ``kind``.

        ``settle`` brings the catalog up to date with the answer before the operation counts as done;
        ``changes_version``: the call makes or deletes the party's version (a lost answer leaves it in doubt, settled
        later by asking the party).
        """
        party = ref if changes_version else None
        with self.oplog.track(kind, context.peer(), ref.model_id, ref.model_version, party) as op:
            answer = self.agents.call(ref.party_id, rpc, request, op.operation_id, timeout)
            if settle is not None:
                settle(answer)
            op.results.append(_ok(ref))
        return answer

    def StoreModel(
        self, request: registry_pb2.StoreModelRequest, context: grpc.ServicerContext
    ) -> registry_pb2.StoreModelResponse:
        ref = check_ref(request.model)
        forward = agent_pb2.StoreModelRequest(model=ref, force_update=request.force_update, stored=request.stored)
        answer = self._on_party("store", context, ref, AgentRpc.STORE_MODEL, forward, self._long_timeout)
        return registry_pb2.StoreModelResponse(model=ref, sha256=answer.sha256, location=answer.location)

    def RestoreModel(
        self, request: registry_pb2.RestoreModelRequest, context: grpc.ServicerContext
    ) -> registry_pb2.RestoreModelResponse:
        ref = check_ref(request.model)
        forward = agent_pb2.RestoreModelRequest(model=ref, force_update=request.force_update, sha256=request.sha256)
        answer = self._on_party(
            "restore",
            context,
            ref,
            AgentRpc.RESTORE_MODEL,
            forward,
            self._long_timeout,
            settle=lambda a: self.catalog.record_import(a.result),
            changes_version=True,
        )
        return registry_pb2.RestoreModelResponse(result=answer.result)

    def HomoConvertModel(
        self, request: registry_pb2.HomoConvertModelRequest, context: grpc.ServicerContext
    ) -> registry_pb2.HomoConvertModelResponse:
        ref = check_ref(request.model)
        forward = agent_pb2.HomoConvertModelRequest(model=ref, framework_name=request.framework_name)
        answer = self._on_party(
            "homo_convert",
            context,
            ref,
            AgentRpc.HOMO_CONVERT_MODEL,
            forward,
            self._long_timeout,
            settle=lambda a: self.catalog.record(a.info),  # the party's manifest digest changed
        )
        return registry_pb2.HomoConvertModelResponse(
            model=ref,
            framework_name=answer.framework_name,
            converted_files=answer.converted_files,
            components=answer.components,
            manifest_digest=answer.info.manifest_digest,
        )

    def DeleteModel(
        self, request: registry_pb2.DeleteModelRequest, context: grpc.ServicerContext
    ) -> registry_pb2.DeleteModelResponse:
        """All or nothing on the party (it deletes the model store's copy before its own), then the catalog.

        The party is named in the operation log before it is called: a delete whose answer is lost, or
        whose coordinator stops before the catalog forgot the version, is settled by asking the party
        (:func:`registry_server.deletes.settle_delete`).
        """
        ref = check_ref(request.model)

        def settle(answer: agent_pb2.DeleteModelResponse) -> None:
            faultpoints.reached("coordinator.delete.answered")
            # the party holds no local copy now (deleted, or it had none): neither does the catalog
            self.catalog.forget(ref.model_id, ref.model_version, ref.role, ref.party_id)

        forward = agent_pb2.DeleteModelRequest(model=ref, delete_from_store=request.delete_from_store)
        timeout = self.agents.conf.coordinator.call_timeout
        answer = self._on_party(
            DELETE, context, ref, AgentRpc.DELETE_MODEL, forward, timeout, settle=settle, changes_version=True
        )
        return registry_pb2.DeleteModelResponse(
            model=ref, deleted_local=answer.deleted_local, deleted_store=answer.deleted_store
        )

    @property
    def _long_timeout(self) -> float:
        """The deadline of a call that moves or rewrites a whole model (the deploy deadline)."""
        return self.agents.conf.coordinator.deploy_timeout

    # -- homo models ------------------------------------------------------------------------------

    def HomoDeployModel(
        self, request: registry_pb2.HomoDeployModelRequest, context: grpc.ServicerContext
    ) -> registry_pb2.HomoDeployModelResponse:
        ref = check_ref(request.model)
        forward = agent_pb2.HomoDeployModelRequest(
            model=ref,
            component_name=request.component_name,
            service_id=request.service_id,
            deployment_type=request.deployment_type,
            deployment_parameters_json=request.deployment_parameters_json,
            framework_name=request.framework_name,
        )
        answer = self._on_party("homo_deploy", context, ref, AgentRpc.HOMO_DEPLOY_MODEL, forward, self._long_timeout)
        return registry_pb2.HomoDeployModelResponse(service_id=request.service_id, status_json=answer.status_json)

    # -- operation history ----------------------------------------------------------------------

    def ListOperations(
        self, request: registry_pb2.ListOperationsRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ListOperationsResponse:
        operations, token = self.catalog.list_operations(
            request.model_id, request.model_version, request.operation, request.page_size, request.page_token
        )
        return registry_pb2.ListOperationsResponse(operations=operations, next_page_token=token)


fill_unimplemented(RegistryServicer, SERVICE, registry_pb2_grpc.RegistryServiceServicer)
