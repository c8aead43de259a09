"""gRPC adaptor of :class:`PartyAgent`: messages in, messages out, nothing else."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from fate_registry.agent.v1 import agent_pb2, agent_pb2_grpc
from fate_registry.channels import OPERATION_ID_KEY, TICKET_KEY
from fate_registry.chunks import chunk_payload, encode_chunk
from fate_registry.errors import Reason, RegistryError
from fate_registry.grpc_server import archive_handlers
from fate_registry.malformed import parse
from fate_registry.unimplemented import fill_unimplemented
from fate_registry.v1.common_pb2 import (
    ConvertedComponent,
    ImportModelHeader,
    ManifestEntry,
    PartyModelInfo,
)
from party_agent.agent import PartyAgent, catalog_info
from party_agent.checkpoints import list_checkpoints, read_checkpoint
from party_agent.deploy import DeployRequest
from party_agent.homo_deploy.request import HomoDeployRequest
from party_agent.idempotency import OnceByOperation
from party_agent.metadata import PartyModelRecord
from party_agent.migrate import MigrateRequest
from party_agent.tickets import TicketBook

T = TypeVar("T")


def model_info(record: PartyModelRecord) -> PartyModelInfo:
    """Everything the agent knows of a version: what the catalog keeps and FATE's other columns."""
    manifest = record.manifest
    created = Timestamp()
    created.FromMilliseconds(record.create_time_ms)
    info = catalog_info(record, manifest.digest, manifest.total_size, len(manifest.files))
    info.MergeFrom(
        PartyModelInfo(
            create_time=created,
            loaded_times=record.loaded_times,
            size_kib=record.size_kib,
            initiator_role=record.initiator_role,
            initiator_party_id=record.initiator_party_id,
            fate_version=record.fate_version,
            train_dsl_json=record.train_dsl_json,
            train_runtime_conf_json=record.train_runtime_conf_json,
            inference_dsl_json=record.inference_dsl_json,
            runtime_conf_on_party_json=record.runtime_conf_on_party_json,
        )
    )
    return info


def _chunks(after_header: Iterator[bytes]) -> Iterator[memoryview]:
    for raw in after_header:
        chunk = chunk_payload(raw)
        if chunk is None:
            raise RegistryError(Reason.INVALID_ARGUMENT, "only the first message of an import may be a header")
        yield chunk


def _metadata(context: grpc.ServicerContext, name: str) -> str:
    for key, value in context.invocation_metadata():
        if key == name:
            return str(value)
    return ""


class AgentServicer(agent_pb2_grpc.PartyAgentServiceServicer):
    """The PartyAgentService; each call by operation id is done once, one-hop transfers need their ticket."""

    def __init__(self, agent: PartyAgent) -> None:
        self.agent = agent
        self.tickets = TicketBook()
        self.once = OnceByOperation()

    @contextlib.contextmanager
    def _transfer(
        self, context: grpc.ServicerContext, presented: ImportModelHeader | agent_pb2.ExportModelRequest
    ) -> Iterator[str]:
        """Claim the call's transfer ticket, if it has one, and record how the transfer ended."""
        ticket = _metadata(context, TICKET_KEY)
        if not ticket:
            yield ""
            return
        self.tickets.claim(ticket, presented)
        try:
            yield ticket
        except RegistryError as exc:
            self.tickets.fail(ticket, exc)
            raise
        except GeneratorExit:
            self.tickets.fail(ticket, RegistryError(Reason.CANCELLED, "the client stopped the transfer"))
            raise
        except Exception:
            self.tickets.fail(ticket, RegistryError(Reason.INTERNAL, "internal error during the transfer"))
            raise

    def import_raw(
        self, request_iterator: Iterator[bytes], context: grpc.ServicerContext
    ) -> agent_pb2.ImportModelResponse:
        """ImportModel on serialized messages: chunks reach the unzipper without being copied."""
        first_raw = next(request_iterator, None)
        first = parse(agent_pb2.ImportModelRequest.FromString, first_raw or b"")
        if first.WhichOneof("payload") != "header":
            raise RegistryError(Reason.MISSING_ARGUMENT, "an import starts with a header message")
        with self._transfer(context, first.header) as ticket:
            result = self.agent.import_archive(first.header, _chunks(request_iterator))
            if ticket:
                self.tickets.finish(ticket, result)
        return agent_pb2.ImportModelResponse(result=result)

    def export_raw(self, request: agent_pb2.ExportModelRequest, context: grpc.ServicerContext) -> Iterator[bytes]:
        """ExportModel as serialized messages: chunks are framed by hand, with one copy."""
        with self._transfer(context, request) as ticket:
            self.agent.sync_with_store(request.model)
            for piece in self.agent.export_archive(request.model, request.stored):
                if piece.header is not None:
                    yield agent_pb2.ExportModelResponse(header=piece.header).SerializeToString()
                elif piece.trailer is not None:
                    yield agent_pb2.ExportModelResponse(trailer=piece.trailer).SerializeToString()
                else:
                    yield encode_chunk(piece.chunk)
            if ticket:
                self.tickets.finish(ticket, None)

    def raw_handlers(self) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
        return archive_handlers(
            self.import_raw, agent_pb2.ImportModelResponse, self.export_raw, agent_pb2.ExportModelRequest
        )

    def ExpectTransfer(
        self, request: agent_pb2.ExpectTransferRequest, context: grpc.ServicerContext
    ) -> agent_pb2.ExpectTransferResponse:
        kind = request.WhichOneof("transfer")
        if not request.ticket or kind is None:
            raise RegistryError(Reason.MISSING_ARGUMENT, "a transfer needs a ticket and what it is for")
        expected: ImportModelHeader | agent_pb2.ExportModelRequest
        if kind == "import_header":
            expected = request.import_header
            self.agent.check_party(expected.target)
        else:
            expected = agent_pb2.ExportModelRequest(model=request.export_model, stored=request.stored)
            self.agent.check_party(expected.model)
        self.tickets.expect(request.ticket, expected, max(1, request.ttl_seconds))
        return agent_pb2.ExpectTransferResponse()

    def GetTransferOutcome(
        self, request: agent_pb2.GetTransferOutcomeRequest, context: grpc.ServicerContext
    ) -> agent_pb2.GetTransferOutcomeResponse:
        found = self.tickets.outcome(request.ticket)
        answer = agent_pb2.GetTransferOutcomeResponse(state=found.state)  # type: ignore[arg-type]
        if found.result is not None:
            answer.result.CopyFrom(found.result)
        if found.error is not None:
            answer.retcode, answer.retmsg = found.error.fate_retcode, found.error.message
            answer.reason = found.error.reason.name
        return answer

    def _once(self, context: grpc.ServicerContext, method: str, request: Any, call: Callable[[], T]) -> T:
        operation_id = _metadata(context, OPERATION_ID_KEY)
        return self.once.run(operation_id, method, request.SerializeToString(), call)

    def LoadModel(
        self, request: agent_pb2.LoadModelRequest, context: grpc.ServicerContext
    ) -> agent_pb2.LoadModelResponse:
        roles = {role: list(parties.party_ids) for role, parties in request.role.items()}
        answer = self._once(
            context,
            "LoadModel",
            request,
            lambda: self.agent.load(
                request.model, roles, request.load_type, request.file_path, request.use_transfer_url_on_serving
            ),
        )
        return agent_pb2.LoadModelResponse(retcode=answer.retcode, retmsg=answer.retmsg)

    def BindModel(
        self, request: agent_pb2.BindModelRequest, context: grpc.ServicerContext
    ) -> agent_pb2.BindModelResponse:
        roles = {role: list(parties.party_ids) for role, parties in request.role.items()}
        answer = self._once(
            context,
            "BindModel",
            request,
            lambda: self.agent.bind(request.model, roles, request.service_id, list(request.servings)),
        )
        return agent_pb2.BindModelResponse(retcode=answer.retcode, retmsg=answer.retmsg)

    def UnloadModel(
        self, request: agent_pb2.UnloadModelRequest, context: grpc.ServicerContext
    ) -> agent_pb2.UnloadModelResponse:
        answer = self._once(context, "UnloadModel", request, lambda: self.agent.unload(request.model))
        return agent_pb2.UnloadModelResponse(retcode=answer.retcode, retmsg=answer.retmsg)

    def UnbindModel(
        self, request: agent_pb2.UnbindModelRequest, context: grpc.ServicerContext
    ) -> agent_pb2.UnbindModelResponse:
        answer = self._once(
            context, "UnbindModel", request, lambda: self.agent.unbind(request.model, list(request.service_ids))
        )
        return agent_pb2.UnbindModelResponse(retcode=answer.retcode, retmsg=answer.retmsg)

    def PrepareDeploy(
        self, request: agent_pb2.PrepareDeployRequest, context: grpc.ServicerContext
    ) -> agent_pb2.PrepareDeployResponse:
        operation_id = _metadata(context, OPERATION_ID_KEY)
        if not operation_id:
            raise RegistryError(Reason.MISSING_ARGUMENT, "a deploy is prepared under an operation id")
        try:
            predict_dsl = json.loads(request.predict_dsl_json)
        except ValueError:
            raise RegistryError(Reason.INVALID_ARGUMENT, "the predict DSL is not JSON") from None
        steps: dict[str, dict[str, int | str]] = {c: {"step_index": i} for c, i in request.cpn_step_index.items()}
        steps.update({c: {"step_name": n} for c, n in request.cpn_step_name.items() if c not in steps})
        deploy = DeployRequest(request.model, request.child_model_version, predict_dsl, steps)
        manifest = self.agent.prepare_deploy(operation_id, deploy)
        return agent_pb2.PrepareDeployResponse(manifest_digest=manifest.digest)

    def PrepareMigrate(
        self, request: agent_pb2.PrepareMigrateRequest, context: grpc.ServicerContext
    ) -> agent_pb2.PrepareMigrateResponse:
        operation_id = _metadata(context, OPERATION_ID_KEY)
        if not operation_id:
            raise RegistryError(Reason.MISSING_ARGUMENT, "a migration is prepared under an operation id")
        migrate = MigrateRequest(
            source=request.model,
            old_roles={role: list(p.party_ids) for role, p in request.role.items()},
            new_roles={role: list(p.party_ids) for role, p in request.migrate_role.items()},
            new_initiator=(request.migrate_initiator.role, request.migrate_initiator.party_id),
            new_version=request.new_model_version,
        )
        done = self.agent.prepare_migrate(operation_id, migrate)
        return agent_pb2.PrepareMigrateResponse(
            new_model=done.model, manifest_digest=done.manifest.digest, archive_path=str(done.archive)
        )

    def DeleteModel(
        self, request: agent_pb2.DeleteModelRequest, context: grpc.ServicerContext
    ) -> agent_pb2.DeleteModelResponse:
        local, stored = self.agent.delete(request.model, request.delete_from_store)
        return agent_pb2.DeleteModelResponse(deleted_local=local, deleted_store=stored)

    def StoreModel(
        self, request: agent_pb2.StoreModelRequest, context: grpc.ServicerContext
    ) -> agent_pb2.StoreModelResponse:
        stored, location = self.agent.store_model(request.model, request.force_update, request.stored)
        return agent_pb2.StoreModelResponse(sha256=stored.sha256, location=location)

    def RestoreModel(
        self, request: agent_pb2.RestoreModelRequest, context: grpc.ServicerContext
    ) -> agent_pb2.RestoreModelResponse:
        result = self.agent.restore_model(request.model, request.force_update, request.sha256)
        return agent_pb2.RestoreModelResponse(result=result)

    def CommitOperation(
        self, request: agent_pb2.CommitOperationRequest, context: grpc.ServicerContext
    ) -> agent_pb2.CommitOperationResponse:
        self.agent.lifecycle.commit(request.operation_id)
        return agent_pb2.CommitOperationResponse()

    def AbortOperation(
        self, request: agent_pb2.AbortOperationRequest, context: grpc.ServicerContext
    ) -> agent_pb2.AbortOperationResponse:
        self.agent.lifecycle.abort(request.operation_id)
        return agent_pb2.AbortOperationResponse()

    def ListCheckpoints(
        self, request: agent_pb2.ListCheckpointsRequest, context: grpc.ServicerContext
    ) -> agent_pb2.ListCheckpointsResponse:
        directory = self.agent.version_dir_of(request.model)
        found = list_checkpoints(directory, request.component_name)
        return agent_pb2.ListCheckpointsResponse(checkpoints=[c.to_proto() for c in found])

    def GetCheckpoint(
        self, request: agent_pb2.GetCheckpointRequest, context: grpc.ServicerContext
    ) -> agent_pb2.GetCheckpointResponse:
        directory = self.agent.version_dir_of(request.model)
        step = request.WhichOneof("step")
        info, models = read_checkpoint(
            directory,
            request.component_name,
            request.step_index if step == "step_index" else None,
            request.step_name if step == "step_name" else None,
        )
        return agent_pb2.GetCheckpointResponse(checkpoint=info.to_proto(), models=models)

    def HomoDeployModel(
        self, request: agent_pb2.HomoDeployModelRequest, context: grpc.ServicerContext
    ) -> agent_pb2.HomoDeployModelResponse:
        deploy = HomoDeployRequest(
            component=request.component_name,
            service_id=request.service_id,
            deployment_type=request.deployment_type,
            parameters_json=request.deployment_parameters_json,
            framework_name=request.framework_name,
        )
        service = self.agent.homo_deploy(request.model, deploy)
        return agent_pb2.HomoDeployModelResponse(status_json=json.dumps(service))

    def HomoConvertModel(
        self, request: agent_pb2.HomoConvertModelRequest, context: grpc.ServicerContext
    ) -> agent_pb2.HomoConvertModelResponse:
        done = self.agent.homo_convert(request.model, request.framework_name)
        return agent_pb2.HomoConvertModelResponse(
            framework_name=done.framework,
            converted_files=[path for c in done.converted for path in c.files],
            components=[
                ConvertedComponent(
                    component_name=c.component,
                    model_alias=c.alias,
                    framework_name=c.framework,
                    converted_model_path=c.files[0],
                )
                for c in done.converted
            ],
            info=model_info(done.record),
        )

    def GetModelInfo(
        self, request: agent_pb2.GetModelInfoRequest, context: grpc.ServicerContext
    ) -> agent_pb2.GetModelInfoResponse:
        record = self.agent.record(request.model)
        manifest = [ManifestEntry(path=r.path, size=r.size, sha256=r.sha256) for r in record.manifest.files]
        return agent_pb2.GetModelInfoResponse(info=model_info(record), manifest=manifest)

    def ListModels(
        self, request: agent_pb2.ListModelsRequest, context: grpc.ServicerContext
    ) -> agent_pb2.ListModelsResponse:
        held = self.agent.held_versions(request.model_id, request.model_version, request.unrecorded_only)
        return agent_pb2.ListModelsResponse(models=held)


fill_unimplemented(
    AgentServicer, agent_pb2.DESCRIPTOR.services_by_name["PartyAgentService"], agent_pb2_grpc.PartyAgentServiceServicer
)
