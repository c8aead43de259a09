"""One-hop transfers: tickets are single-use and bound to one model; every outcome reaches the log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from client.sdk import RegistryClient
from fate_registry.agent.v1 import agent_pb2, agent_pb2_grpc
from fate_registry.channels import TICKET_KEY
from fate_registry.config import DatabaseConf, parse
from fate_registry.errors import Reason, RegistryError, from_rpc_error
from fate_registry.v1 import registry_pb2 as pb
from fate_registry.v1.common_pb2 import ImportModelHeader, PartyModelRef
from registry_server import transfers
from registry_server.agents import AgentClients
from registry_server.catalog import Catalog, ModelFilter
from tests.conftest import GeneratedModel
from tests.support.federation import LocalFederation


def _ref(model: GeneratedModel, version: str = "") -> PartyModelRef:
    return PartyModelRef(role="guest", party_id="9999", model_id=model.model_id, model_version=version or model.version)


def _upload(header: ImportModelHeader, archive: Path) -> Iterator[agent_pb2.ImportModelRequest]:
    yield agent_pb2.ImportModelRequest(header=header)
    yield agent_pb2.ImportModelRequest(chunk=archive.read_bytes())


def _agent_import(address: str, ticket: str, header: ImportModelHeader, archive: Path) -> agent_pb2.ImportModelResponse:
    with grpc.insecure_channel(address) as channel:
        stub = agent_pb2_grpc.PartyAgentServiceStub(channel)
        try:
            response: agent_pb2.ImportModelResponse = stub.ImportModel(
                _upload(header, archive), metadata=((TICKET_KEY, ticket),), timeout=30
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None
    return response


def test_a_ticket_allows_one_transfer_of_one_model(federation: LocalFederation, model: GeneratedModel) -> None:
    archive = model.archives["guest", "9999"]
    header = ImportModelHeader(target=_ref(model), size=archive.stat().st_size)
    with RegistryClient(federation.address) as client:
        granted = client._unary(lambda stub: stub.BeginTransfer, pb.BeginTransferRequest(import_header=header))
        other = ImportModelHeader(target=_ref(model, "another-version"), size=header.size)
        with pytest.raises(RegistryError) as info:
            _agent_import(granted.agent_address, granted.ticket, other, archive)
        assert info.value.reason is Reason.PERMISSION_DENIED and "another transfer" in info.value.message
        with pytest.raises(RegistryError) as info:
            _agent_import(granted.agent_address, "forged." + granted.ticket[-10:], header, archive)
        assert info.value.reason is Reason.PERMISSION_DENIED
        _agent_import(granted.agent_address, granted.ticket, header, archive)
        with pytest.raises(RegistryError) as info:
            _agent_import(granted.agent_address, granted.ticket, header, archive)
        assert info.value.reason is Reason.PERMISSION_DENIED and "used already" in info.value.message
        ended = client._unary(
            lambda stub: stub.EndTransfer, pb.EndTransferRequest(ticket=granted.ticket, model=_ref(model))
        )
        assert ended.result.model == _ref(model)
        info_rows = client.get_model_info(pb.GetModelInfoRequest(model_version=model.version))
        assert [(m.role, m.party_id) for m in info_rows.models] == [("guest", "9999")]
        log = client.list_operations(pb.ListOperationsRequest(model_version=model.version, operation="import"))
        assert log.operations[0].status == "success" and log.operations[0].results[0].retcode == 0


def test_an_archive_that_arrives_short_is_refused_and_nothing_imported(
    federation: LocalFederation, model: GeneratedModel, tmp_path: Path
) -> None:
    """flow ends its stream short when the file changes while it is sent; the agent refuses an archive
    shorter than the header announced, even one whose bytes so far would unpack (here: all but the last)."""
    archive = model.archives["guest", "9999"]
    header = ImportModelHeader(target=_ref(model, "short"), size=archive.stat().st_size + 1)
    with RegistryClient(federation.address) as client:
        granted = client._unary(lambda stub: stub.BeginTransfer, pb.BeginTransferRequest(import_header=header))
        with pytest.raises(RegistryError) as info:
            _agent_import(granted.agent_address, granted.ticket, header, archive)
        assert info.value.reason is Reason.BAD_ARCHIVE
        assert f"arrived with {header.size - 1} bytes where {header.size} were announced" in info.value.message
        # and through the SDK, the file truncated once its first chunk was sent
        changing = tmp_path / "changing.zip"
        changing.write_bytes(archive.read_bytes())
        assert changing.stat().st_size > 3 * 4096  # several chunks of 4 KiB

        def truncate(_: int) -> None:
            with changing.open("r+b") as file:
                file.truncate(1)

        with pytest.raises(RegistryError) as info:
            client.import_model(changing, _ref(model, "changed"), progress=truncate, chunk_size=4096)
        assert info.value.reason is Reason.INVALID_ARGUMENT and "changed while it was sent" in info.value.message
        for version in ("short", "changed"):
            with pytest.raises(RegistryError) as info:
                client.get_model_info(pb.GetModelInfoRequest(model_version=version))
            assert info.value.reason is Reason.MODEL_NOT_FOUND
    assert not list((federation.model_cache("9999")).glob(f"guest#9999#{model.model_id}/short"))
    assert not list((federation.model_cache("9999")).glob(f"guest#9999#{model.model_id}/changed"))


def test_a_failed_direct_import_is_logged_with_the_party_reason(
    federation: LocalFederation, model: GeneratedModel
) -> None:
    wrong_role = PartyModelRef(role="host", party_id="9999", model_id=model.model_id, model_version="wr")
    with RegistryClient(federation.address, transfer="direct") as client:
        with pytest.raises(RegistryError) as info:
            client.import_model(model.archives["guest", "9999"], wrong_role)
        assert info.value.reason is Reason.PARTY_NOT_IN_ROLE
        log = client.list_operations(pb.ListOperationsRequest(model_version="wr"))
    assert log.operations[0].status == "failed" and log.operations[0].retcode == 400
    assert log.operations[0].results[0].reason == "PARTY_NOT_IN_ROLE"


def test_a_transfer_the_client_never_ended_is_recorded_by_the_sweep(
    federation: LocalFederation, model: GeneratedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The coordinator's pieces run in this process (a catalog of its own), the agent is the real one."""
    conf = parse({"parties": {"9999": {"address": federation.agent_address("9999")}}}, None, tmp_path)
    catalog = Catalog(DatabaseConf(engine="sqlite", path=tmp_path / "catalog.db"))
    agents = AgentClients(conf)
    desk = transfers.TransferDesk(catalog, agents, lambda ref: None)
    try:
        archive = model.archives["guest", "9999"]
        header = ImportModelHeader(target=_ref(model, "swept"), size=archive.stat().st_size)
        request = pb.BeginTransferRequest(import_header=header)
        granted = desk.begin(request, "test", header.target)
        _agent_import(granted.agent_address, granted.ticket, header, archive)  # ... and the client vanishes
        unused = desk.begin(pb.BeginTransferRequest(export_model=_ref(model, "swept")), "test", _ref(model, "swept"))
        monkeypatch.setattr(transfers, "TICKET_TTL_SECONDS", -1)
        desk.sweep()
        assert [m.party_id for m in catalog.find(ModelFilter(model_version="swept"))] == ["9999"]
        operations, _ = catalog.list_operations("", "swept", "", 10, "")
        assert sorted(o.status for o in operations) == ["cancelled", "success"]
        assert catalog.open_transfer(unused.ticket) is None
    finally:
        agents.close()
        catalog.close()
