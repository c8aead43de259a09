"""Empty required fields are refused at the coordinator's API boundary: raw gRPC, the SDK and `flow` alike.

An empty id used to act as "any": with a model in the catalog, an empty GetPredictDsl request (or
`flow model get-predict-dsl --model-id ""`, an unset shell variable) answered that model's DSL. A real
coordinator and agents (:class:`LocalFederation`) holding an imported model are sent the default message
of every RPC over a raw channel; each is refused with FATE's retcode 101 naming what is missing, except
the listings where an empty request means "all".
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from client.sdk import RegistryClient
from fate_registry.errors import Reason, RegistryError, from_rpc_error
from fate_registry.v1 import registry_pb2 as pb
from fate_registry.v1.common_pb2 import ImportModelHeader, PartyModelRef
from tests.conftest import GeneratedModel, generate_model
from tests.flow_cli import flow
from tests.support.federation import LocalFederation

SERVICE = pb.DESCRIPTOR.services_by_name["RegistryService"]
TIMEOUT = 30.0
REF = "role,party_id,model_id,model_version"
# What the default (empty) request of each RPC is refused for, as FATE names the keys; None: an empty
# request is valid (a listing, where an empty filter means "all").
EMPTY_REQUEST_MISSING: dict[str, str | None] = {
    "ImportModel": REF,  # sent as a header naming nothing: an import's first message must be its header
    "ExportModel": REF,
    "BeginTransfer": REF,
    "EndTransfer": f"ticket,{REF}",
    "StoreModel": REF,
    "RestoreModel": REF,
    "LoadModel": "model_id,model_version",
    "BindModel": "model_id,model_version",
    "UnloadModel": "model_id,model_version",
    "UnbindModel": "service_ids,model_id,model_version",
    "MigrateModel": "migrate_initiator,role,migrate_role,model_id,model_version,execute_party",
    "DeployModel": "model_id,model_version",
    "GetPredictDsl": "model_id,model_version",
    "GetPredictConf": "model_id,model_version",
    "GetModelInfo": "model_version",
    "ListModelVersions": None,
    "ListModelTags": "job_id",
    "AddModelTag": "job_id,tag_name",
    "RemoveModelTag": "job_id,tag_name",
    "CreateTag": "tag_name",
    "QueryTag": "tag_name",
    "UpdateTag": "tag_name",
    "DeleteTag": "tag_name",
    "ListTags": None,
    "HomoConvertModel": REF,
    "HomoDeployModel": f"{REF},service_id,component_name,deployment_type",
    "ListCheckpoints": f"{REF},component_name",
    "GetCheckpoint": f"{REF},component_name",
    "DeleteModel": REF,
    "ListOperations": None,
}


@pytest.fixture(scope="module")
def imported(federation: LocalFederation, tmp_path_factory: pytest.TempPathFactory) -> GeneratedModel:
    """A model every party of the federation holds: what an empty filter would match."""
    model = generate_model(tmp_path_factory.mktemp("model"))
    with RegistryClient(federation.address) as client:
        for (role, party_id), archive in model.archives.items():
            ref = PartyModelRef(role=role, party_id=party_id, model_id=model.model_id, model_version=model.version)
            client.import_model(archive, ref)
    return model


@pytest.fixture(scope="module")
def channel(federation: LocalFederation) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(federation.address) as opened:
        yield opened


def _call(channel: grpc.Channel, method: MethodDescriptor, request: Message) -> None:
    """One call of ``method`` with ``request``, its whole answer read (a server stream to its end)."""
    path = f"/{SERVICE.full_name}/{method.name}"
    serialize, parse = type(request).SerializeToString, GetMessageClass(method.output_type).FromString
    if method.client_streaming:
        channel.stream_unary(path, serialize, parse)(iter([request]), timeout=TIMEOUT)
    elif method.server_streaming:
        for _ in channel.unary_stream(path, serialize, parse)(request, timeout=TIMEOUT):
            pass
    else:
        channel.unary_unary(path, serialize, parse)(request, timeout=TIMEOUT)


def _refusal(channel: grpc.Channel, method: MethodDescriptor, request: Message) -> RegistryError:
    with pytest.raises(grpc.RpcError) as caught:
        _call(channel, method, request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return from_rpc_error(caught.value)


def _empty_request(method: MethodDescriptor) -> Message:
    """The default message; for the import's client stream, a first message that is a header naming nothing."""
    if method.name == "ImportModel":
        return pb.ImportModelRequest(header=ImportModelHeader())
    return GetMessageClass(method.input_type)()


@pytest.mark.parametrize("method", list(SERVICE.methods), ids=lambda m: m.name)
def test_an_empty_request_is_refused_naming_what_is_missing(
    channel: grpc.Channel, imported: GeneratedModel, method: MethodDescriptor
) -> None:
    missing = EMPTY_REQUEST_MISSING[method.name]  # a new RPC must be added here, and to the table
    request = _empty_request(method)
    if missing is None:
        _call(channel, method, request)
        return
    error = _refusal(channel, method, request)
    assert error.reason is Reason.MISSING_ARGUMENT and error.fate_retcode == 101, error
    assert error.message == f"required parameters are missing: {missing}; "
    assert error.metadata == {"missing": missing}


def test_a_blank_id_is_missing_too(channel: grpc.Channel, imported: GeneratedModel) -> None:
    method = SERVICE.methods_by_name["GetPredictDsl"]
    error = _refusal(channel, method, pb.GetPredictDslRequest(model_id=" \t", model_version=imported.version))
    assert (error.fate_retcode, error.message) == (101, "required parameters are missing: model_id; ")


def test_the_sdk_is_refused_the_same_way(federation: LocalFederation, imported: GeneratedModel) -> None:
    with RegistryClient(federation.address) as client, pytest.raises(RegistryError) as caught:
        client.get_predict_conf(pb.GetPredictConfRequest(model_version=imported.version))
    assert (caught.value.fate_retcode, caught.value.message) == (101, "required parameters are missing: model_id; ")


def test_flow_get_predict_dsl_with_empty_ids_is_refused_and_writes_nothing(
    federation: LocalFederation, imported: GeneratedModel, tmp_path: Path
) -> None:
    refused_out = tmp_path / "refused"
    args = ("model", "get-predict-dsl", "--model-id", "", "--model-version", "", "-o", str(refused_out))
    code, answer = flow(federation, *args)
    assert code != 0 and answer == {
        "retcode": 101,
        "retmsg": "required parameters are missing: model_id,model_version; ",
    }
    assert not refused_out.exists()

    out = tmp_path / "out"  # the model those empty ids used to match is there
    ids = ("--model-id", imported.model_id, "--model-version", imported.version)
    code, answer = flow(federation, "model", "get-predict-dsl", *ids, "-o", str(out))
    assert code == 0 and answer["retcode"] == 0, answer
    assert [p.name.startswith("predict_dsl_") for p in out.iterdir()] == [True]
