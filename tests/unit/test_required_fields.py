"""The table of required fields of the coordinator's client API (registry_server.required)."""

from __future__ import annotations

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message

from fate_registry.errors import Reason, RegistryError, missing_keys
from fate_registry.v1 import registry_pb2 as pb
from fate_registry.v1.common_pb2 import ImportModelHeader, Party, PartyModelRef, RoleParties
from registry_server.required import REQUIRED, refuse_missing

SERVICE = pb.DESCRIPTOR.services_by_name["RegistryService"]
REF = PartyModelRef(role="guest", party_id="9999", model_id="m", model_version="v")
REF_NAMES = ["role", "party_id", "model_id", "model_version"]


def _missing(method: str, request: Message) -> list[str]:
    return REQUIRED[method].missing(request)


def test_every_rpc_of_the_registry_service_has_an_entry() -> None:
    """A new RPC cannot be forgotten: the table names exactly the service's methods."""
    assert set(REQUIRED) == {method.name for method in SERVICE.methods}


def _leaf(descriptor: Descriptor, path: str) -> FieldDescriptor:
    *parents, leaf = path.split(".")
    for name in parents:
        field = descriptor.fields_by_name[name]
        assert field.message_type is not None and not field.is_repeated, path
        descriptor = field.message_type
    return descriptor.fields_by_name[leaf]


@pytest.mark.parametrize("method", list(SERVICE.methods), ids=lambda m: m.name)
def test_every_path_is_a_text_or_list_field_of_the_request(method: MethodDescriptor) -> None:
    """No typo can make a requirement silently never apply: each path resolves in the request message, through
    singular messages, to a string or a repeated (or map) field, the kinds whose emptiness the table judges."""
    required = REQUIRED[method.name]
    for key in (*required.every, *(k for group in required.one_of for k in group)):
        for path in key.paths:
            field = _leaf(method.input_type, path)
            assert field.type == FieldDescriptor.TYPE_STRING or field.is_repeated, path


@pytest.mark.parametrize(
    ("method", "request_", "missing"),
    [
        ("GetPredictDsl", pb.GetPredictDslRequest(), ["model_id", "model_version"]),
        ("GetPredictConf", pb.GetPredictConfRequest(model_id="m"), ["model_version"]),
        ("GetPredictDsl", pb.GetPredictDslRequest(model_id=" \t", model_version="v"), ["model_id"]),
        ("GetPredictDsl", pb.GetPredictDslRequest(model_id="m", model_version="v"), []),
        ("DeployModel", pb.DeployModelRequest(model_version="v"), ["model_id"]),
        ("ExportModel", pb.ExportModelRequest(), REF_NAMES),
        (
            "StoreModel",
            pb.StoreModelRequest(model=PartyModelRef(role="guest", model_id="m")),
            ["party_id", "model_version"],
        ),
        ("DeleteModel", pb.DeleteModelRequest(model=REF), []),
        ("ListCheckpoints", pb.ListCheckpointsRequest(model=REF), ["component_name"]),
        ("GetCheckpoint", pb.GetCheckpointRequest(model=REF, component_name="c"), []),  # no step: refused downstream
        (
            "HomoDeployModel",
            pb.HomoDeployModelRequest(model=REF, component_name="homo_lr_0"),
            ["service_id", "deployment_type"],
        ),
        ("ImportModel", pb.ImportModelRequest(header=ImportModelHeader(target=REF)), []),
        ("ImportModel", pb.ImportModelRequest(chunk=b"zip"), REF_NAMES),
        ("EndTransfer", pb.EndTransferRequest(model=REF), ["ticket"]),
        ("UnbindModel", pb.UnbindModelRequest(model_id="m", model_version="v"), ["service_ids"]),
        ("UnbindModel", pb.UnbindModelRequest(model_id="m", model_version="v", service_ids=[" "]), ["service_ids"]),
        ("UnbindModel", pb.UnbindModelRequest(model_id="m", model_version="v", service_ids=["", "s"]), []),
        ("AddModelTag", pb.AddModelTagRequest(job_id="j", tag_name="  "), ["tag_name"]),
        ("ListModelTags", pb.ListModelTagsRequest(page_size=5), ["job_id"]),
        ("ListModelVersions", pb.ListModelVersionsRequest(), []),
        ("ListOperations", pb.ListOperationsRequest(), []),
    ],
)
def test_missing_names_each_empty_or_blank_required_field(method: str, request_: Message, missing: list[str]) -> None:
    assert _missing(method, request_) == missing


def test_a_job_id_stands_for_model_id_and_version_in_load_and_bind() -> None:
    for method, request_type in (("LoadModel", pb.LoadModelRequest), ("BindModel", pb.BindModelRequest)):
        assert _missing(method, request_type(job_id="202401")) == []
        assert _missing(method, request_type(model_id="m", model_version="v")) == []
        assert _missing(method, request_type()) == ["model_id", "model_version"]  # the first form is named
        assert _missing(method, request_type(model_id="m")) == ["model_version"]
        assert _missing(method, request_type(job_id=" ", model_version="v")) == ["model_id"]


def test_get_model_info_needs_a_model_version_or_a_model_id() -> None:
    assert _missing("GetModelInfo", pb.GetModelInfoRequest()) == ["model_version"]
    assert _missing("GetModelInfo", pb.GetModelInfoRequest(model_id="m")) == []
    assert _missing("GetModelInfo", pb.GetModelInfoRequest(model_version="v", role="guest")) == []


def test_a_transfer_names_what_its_chosen_side_lacks() -> None:
    assert _missing("BeginTransfer", pb.BeginTransferRequest()) == REF_NAMES
    assert _missing("BeginTransfer", pb.BeginTransferRequest(export_model=REF)) == []
    assert _missing("BeginTransfer", pb.BeginTransferRequest(import_header=ImportModelHeader(target=REF))) == []
    half = PartyModelRef(role="guest", party_id="9999")
    assert _missing("BeginTransfer", pb.BeginTransferRequest(export_model=half)) == ["model_id", "model_version"]
    header = ImportModelHeader(target=half)
    assert _missing("BeginTransfer", pb.BeginTransferRequest(import_header=header)) == ["model_id", "model_version"]


def test_migrate_names_the_initiator_once_and_the_role_maps() -> None:
    complete = pb.MigrateModelRequest(
        model_id="m",
        model_version="v",
        role={"guest": RoleParties(party_ids=["9999"])},
        execute_party={"guest": RoleParties(party_ids=["9999"])},
        migrate_initiator=Party(role="guest", party_id="99"),
        migrate_role={"guest": RoleParties(party_ids=["99"])},
    )
    assert _missing("MigrateModel", complete) == []
    half = pb.MigrateModelRequest()
    half.CopyFrom(complete)
    half.migrate_initiator.party_id = ""
    del half.role["guest"]
    assert _missing("MigrateModel", half) == ["migrate_initiator", "role"]
    assert _missing("MigrateModel", pb.MigrateModelRequest()) == [
        "migrate_initiator",
        "role",
        "migrate_role",
        "model_id",
        "model_version",
        "execute_party",
    ]


def test_the_refusal_is_fates_missing_keys_answer() -> None:
    with pytest.raises(RegistryError) as caught:
        refuse_missing("GetPredictDsl", pb.GetPredictDslRequest())
    expected = missing_keys(["model_id", "model_version"])
    assert caught.value.reason is Reason.MISSING_ARGUMENT and caught.value.fate_retcode == 101
    assert caught.value.message == expected.message == "required parameters are missing: model_id,model_version; "
    assert caught.value.metadata == expected.metadata
    refuse_missing("GetPredictDsl", pb.GetPredictDslRequest(model_id="m", model_version="v"))  # no refusal
