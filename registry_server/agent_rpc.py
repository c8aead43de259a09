"""The agent's RPCs as typed descriptors: each pairs a method's path with its request and response classes.

``AgentClients.call(party, AgentRpc.PREPARE_DEPLOY, request, ...)`` takes a ``PrepareDeployRequest``
and returns a ``PrepareDeployResponse``: a call names its RPC, and mypy knows its answer. The pairs
are checked against the agent's service descriptor when this module is imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from google.protobuf.message import Message

from fate_registry.agent.v1 import agent_pb2

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)
SERVICE = agent_pb2.DESCRIPTOR.services_by_name["PartyAgentService"]


@dataclass(frozen=True)
class Rpc(Generic[Req, Resp]):
    """One method of ``PartyAgentService``: its name, request and response classes."""

    name: str
    request: type[Req]
    response: type[Resp]

    @property
    def path(self) -> str:
        """The gRPC method path, as the transports send it."""
        return f"/{SERVICE.full_name}/{self.name}"


class AgentRpc:
    """Every RPC the coordinator calls on an agent."""

    IMPORT_MODEL: Final = Rpc("ImportModel", agent_pb2.ImportModelRequest, agent_pb2.ImportModelResponse)
    EXPORT_MODEL: Final = Rpc("ExportModel", agent_pb2.ExportModelRequest, agent_pb2.ExportModelResponse)
    EXPECT_TRANSFER: Final = Rpc("ExpectTransfer", agent_pb2.ExpectTransferRequest, agent_pb2.ExpectTransferResponse)
    GET_TRANSFER_OUTCOME: Final = Rpc(
        "GetTransferOutcome", agent_pb2.GetTransferOutcomeRequest, agent_pb2.GetTransferOutcomeResponse
    )
    GET_MODEL_INFO: Final = Rpc("GetModelInfo", agent_pb2.GetModelInfoRequest, agent_pb2.GetModelInfoResponse)
    LIST_MODELS: Final = Rpc("ListModels", agent_pb2.ListModelsRequest, agent_pb2.ListModelsResponse)
    STORE_MODEL: Final = Rpc("StoreModel", agent_pb2.StoreModelRequest, agent_pb2.StoreModelResponse)
    RESTORE_MODEL: Final = Rpc("RestoreModel", agent_pb2.RestoreModelRequest, agent_pb2.RestoreModelResponse)
    DELETE_MODEL: Final = Rpc("DeleteModel", agent_pb2.DeleteModelRequest, agent_pb2.DeleteModelResponse)
    LOAD_MODEL: Final = Rpc("LoadModel", agent_pb2.LoadModelRequest, agent_pb2.LoadModelResponse)
    BIND_MODEL: Final = Rpc("BindModel", agent_pb2.BindModelRequest, agent_pb2.BindModelResponse)
    UNLOAD_MODEL: Final = Rpc("UnloadModel", agent_pb2.UnloadModelRequest, agent_pb2.UnloadModelResponse)
    UNBIND_MODEL: Final = Rpc("UnbindModel", agent_pb2.UnbindModelRequest, agent_pb2.UnbindModelResponse)
    PREPARE_DEPLOY: Final = Rpc("PrepareDeploy", agent_pb2.PrepareDeployRequest, agent_pb2.PrepareDeployResponse)
    PREPARE_MIGRATE: Final = Rpc("PrepareMigrate", agent_pb2.PrepareMigrateRequest, agent_pb2.PrepareMigrateResponse)
    COMMIT_OPERATION: Final = Rpc(
        "CommitOperation", agent_pb2.CommitOperationRequest, agent_pb2.CommitOperationResponse
    )
    ABORT_OPERATION: Final = Rpc("AbortOperation", agent_pb2.AbortOperationRequest, agent_pb2.AbortOperationResponse)
    LIST_CHECKPOINTS: Final = Rpc(
        "ListCheckpoints", agent_pb2.ListCheckpointsRequest, agent_pb2.ListCheckpointsResponse
    )
    GET_CHECKPOINT: Final = Rpc("GetCheckpoint", agent_pb2.GetCheckpointRequest, agent_pb2.GetCheckpointResponse)
    HOMO_CONVERT_MODEL: Final = Rpc(
        "HomoConvertModel", agent_pb2.HomoConvertModelRequest, agent_pb2.HomoConvertModelResponse
    )
    HOMO_DEPLOY_MODEL: Final = Rpc(
        "HomoDeployModel", agent_pb2.HomoDeployModelRequest, agent_pb2.HomoDeployModelResponse
    )
    GET_STORED_COPY: Final = Rpc("GetStoredCopy", agent_pb2.GetStoredCopyRequest, agent_pb2.GetStoredCopyResponse)
    DESCRIBE_PARTY: Final = Rpc("DescribeParty", agent_pb2.DescribePartyRequest, agent_pb2.DescribePartyResponse)


def _check(rpcs: list[Rpc[Message, Message]]) -> None:
    """Each descriptor names a method of the service, with the classes the service declares for it."""
    for rpc in rpcs:
        method = SERVICE.methods_by_name.get(rpc.name)
        declared = (method.input_type.full_name, method.output_type.full_name) if method else None
        paired = (rpc.request.DESCRIPTOR.full_name, rpc.response.DESCRIPTOR.full_name)
        if declared != paired:
            raise TypeError(f"agent RPC {rpc.name}: {paired} does not match the service's {declared}")


_check([rpc for rpc in vars(AgentRpc).values() if isinstance(rpc, Rpc)])
