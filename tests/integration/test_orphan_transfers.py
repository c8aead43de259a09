"""One-hop transfers a coordinator authorised before it stopped: its restart settles them from the agent.

The coordinator's pieces run in this process on a catalog of their own, against the real agent of party
9999; a second :class:`TransferDesk` on the same catalog is the coordinator after its restart.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fate_registry.config import DatabaseConf, parse
from fate_registry.errors import Reason, RegistryError
from fate_registry.v1 import registry_pb2 as pb
from fate_registry.v1.common_pb2 import ImportModelHeader
from registry_server.agents import AgentClients
from registry_server.catalog import Catalog, ModelFilter
from registry_server.replicas import Leases
from registry_server.transfers import TransferDesk
from tests.conftest import GeneratedModel
from tests.integration.test_direct_transfer import _agent_import, _ref
from tests.support.federation import LocalFederation

REPLICA = "coordinator"


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    catalog = Catalog(DatabaseConf(engine="sqlite", path=tmp_path / "catalog.db"), owner=REPLICA)
    try:
        yield catalog
    finally:
        catalog.close()


@pytest.fixture
def agents(federation: LocalFederation, tmp_path: Path) -> Iterator[AgentClients]:
    clients = AgentClients(parse({"parties": {"9999": {"address": federation.agent_address("9999")}}}, None, tmp_path))
    try:
        yield clients
    finally:
        clients.close()


def status(catalog: Catalog, version: str) -> str:
    (operation,) = catalog.list_operations("", version, "import", 10, "")[0]
    return operation.status


def settling(desk: TransferDesk, where: ModelFilter) -> str:
    """What get-model-info would say of a version the catalog lacks: "being settled", or nothing."""
    try:
        desk.raise_if_settling(where)
    except RegistryError as exc:
        assert exc.reason is Reason.PARTY_UNAVAILABLE and exc.fate_retcode == 105, exc
        return exc.message
    return ""


def test_a_restart_settles_the_transfers_its_previous_run_authorised(
    model: GeneratedModel, catalog: Catalog, agents: AgentClients
) -> None:
    live = Leases(catalog.db, REPLICA, 30).live
    before = TransferDesk(catalog, agents, lambda ref: None)
    archive = model.archives["guest", "9999"]
    imported = ImportModelHeader(target=_ref(model, "orphan-done"), size=archive.stat().st_size)
    granted = before.begin(pb.BeginTransferRequest(import_header=imported), "test", imported.target)
    _agent_import(granted.agent_address, granted.ticket, imported, archive)  # ... and the coordinator stops
    unused = ImportModelHeader(target=_ref(model, "orphan-unused"), size=archive.stat().st_size)
    before.begin(pb.BeginTransferRequest(import_header=unused), "test", unused.target)

    before.settle_orphans(live())  # its own transfers: their clients end them
    assert (status(catalog, "orphan-done"), status(catalog, "orphan-unused")) == ("running", "running")
    assert settling(before, ModelFilter(model_version="orphan-done")) == ""

    after = TransferDesk(catalog, agents, lambda ref: None)  # the restarted coordinator
    message = settling(after, ModelFilter(model_id=model.model_id, model_version="orphan-done", party_id="9999"))
    assert "orphan-done of party 9999 (guest) is being settled" in message and "ask again" in message
    assert settling(after, ModelFilter(model_version="orphan-done", role="host")) == ""

    after.settle_orphans(live())
    assert [m.party_id for m in catalog.find(ModelFilter(model_version="orphan-done"))] == ["9999"]
    assert status(catalog, "orphan-done") == "success"
    # never used: withdrawn now, so it cannot run; whether the party holds the version is asked in doubt
    assert status(catalog, "orphan-unused") == "in_doubt"
    assert [o.model_version for o in catalog.in_doubt()] == ["orphan-unused"]
    assert "is being settled" in settling(after, ModelFilter(model_version="orphan-unused"))
