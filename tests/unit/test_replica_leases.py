"""Replica leases and operation takeover on a real SQLite catalog shared by two Catalog objects."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from fate_registry.config import DatabaseConf
from fate_registry.errors import Reason, RegistryError, Retcode
from fate_registry.v1.common_pb2 import PartyModelInfo, PartyResult
from fate_registry.v1.registry_pb2 import ListModelVersionsRequest
from registry_server.catalog import Catalog
from registry_server.replicas import Leases
from tests.support.cluster import wait_until

LONG = 60.0
SHORT = 0.2
OPERATIONS_TOTAL = "fate_registry_operations_total"


@pytest.fixture
def conf(tmp_path: Path) -> DatabaseConf:
    return DatabaseConf(engine="sqlite", path=tmp_path / "registry.db")


@pytest.fixture
def catalogs(conf: DatabaseConf) -> Iterator[tuple[Catalog, Catalog]]:
    a, b = Catalog(conf, owner="a"), Catalog(conf, owner="b")
    yield a, b
    a.close()
    b.close()


def _live(leases: Leases) -> set[str]:
    with leases.db.connection_context():
        return {row.replica_id for row in leases.live()}


def test_a_lease_is_live_until_it_expires_or_is_released(catalogs: tuple[Catalog, Catalog]) -> None:
    a, b = catalogs
    lasting, brief = Leases(a.db, "a", LONG), Leases(b.db, "b", SHORT)
    lasting.renew()
    brief.renew()
    assert _live(lasting) == {"a", "b"}
    wait_until(lambda: _live(lasting) == {"a"}, 10, "b's lease expired")
    brief.renew()
    assert _live(lasting) == {"a", "b"}
    lasting.release()
    assert _live(brief) == {"b"}


def test_only_an_expired_owners_operations_are_taken_over_once(
    conf: DatabaseConf, catalogs: tuple[Catalog, Catalog]
) -> None:
    a, b = catalogs
    a_leases, b_leases = Leases(a.db, "a", LONG), Leases(b.db, "b", LONG)
    a_leases.renew()
    b_leases.renew()
    deploy = a.start_operation("deploy", "test", "model", "v1")
    a.set_plan(deploy, "preparing", {"kind": "deploy", "parties": []})
    tag = a.start_operation("tag", "test", "model", "v1")
    statuses = ["running", "preparing", "committing", "aborting"]

    assert {u.operation_id for u in a.unfinished(statuses, a_leases.live())} == {deploy, tag}  # its own
    assert b.unfinished(statuses, b_leases.live()) == []  # a is alive: its operations are its own
    Leases(a.db, "a", SHORT).renew()  # a stops renewing: its lease runs out
    found = wait_until(lambda: b.unfinished(statuses, b_leases.live()), 10, "a's lease expired")
    assert {(u.operation_id, u.status, u.owner) for u in found} == {(deploy, "preparing", "a"), (tag, "running", "a")}
    assert [u.plan for u in found if u.operation_id == deploy] == [{"kind": "deploy", "parties": []}]

    assert all(b.claim(u) for u in found)
    third = Catalog(conf, owner="c")
    try:
        assert not any(third.claim(u) for u in found)  # the same stale view, second: b was first
    finally:
        third.close()
    with pytest.raises(RegistryError) as info:  # the stalled owner may no longer decide anything
        a.set_plan(deploy, "committing", {"kind": "deploy", "parties": []})
    assert info.value.reason is Reason.CANCELLED
    b.set_plan(deploy, "aborting", {"kind": "deploy", "parties": []})

    b.interrupt(tag, "the coordinator replica a stopped before the operation finished")
    operations, _ = b.list_operations("model", "v1", "tag", 10, "")
    assert [(op.status, op.retmsg) for op in operations] == [
        ("interrupted", "the coordinator replica a stopped before the operation finished")
    ]


def test_an_interrupted_operation_keeps_no_party_result_running(catalogs: tuple[Catalog, Catalog]) -> None:
    a, b = catalogs
    running = PartyResult(role="guest", party_id="9999", retcode=Retcode.RUNNING, retmsg="running")
    done = PartyResult(role="host", party_id="10000", retcode=0, retmsg="success")
    operation = a.start_operation("deploy", "test", "model", "v1", pending=[running, done])
    b_leases = Leases(b.db, "b", LONG)
    b_leases.renew()  # a holds no lease: its operations are orphaned
    (unfinished,) = b.unfinished(["running"], b_leases.live())
    assert b.claim(unfinished)
    counted = REGISTRY.get_sample_value(OPERATIONS_TOTAL, {"kind": "deploy", "outcome": "interrupted"}) or 0.0
    b.interrupt(operation, "the coordinator replica a stopped before the operation finished")
    assert REGISTRY.get_sample_value(OPERATIONS_TOTAL, {"kind": "deploy", "outcome": "interrupted"}) == counted + 1
    (logged,), _ = b.list_operations("model", "v1", "deploy", 10, "")
    assert logged.status == "interrupted"
    assert [(r.party_id, r.retcode, r.reason) for r in logged.results] == [
        ("9999", Retcode.OPERATING_ERROR, "CANCELLED"),
        ("10000", 0, ""),
    ]
    assert logged.results[0].retmsg == "the coordinator replica a stopped before the operation finished"


def test_version_ids_are_unique_across_catalogs(catalogs: tuple[Catalog, Catalog]) -> None:
    a, b = catalogs
    ids = [c.new_version_id() for _ in range(200) for c in (a, b)]
    assert len(set(ids)) == len(ids)


def test_a_catalog_without_version_rows_gets_them_on_opening(conf: DatabaseConf) -> None:
    catalog = Catalog(conf)
    for version in ("v1", "v2"):
        catalog.record(PartyModelInfo(role="guest", party_id="9999", model_id="m", model_version=version))
    with catalog.db.connection_context():
        catalog.db.execute_sql("DELETE FROM t_registry_model_version")  # type: ignore[no-untyped-call]  # as before
    catalog.close()
    reopened = Catalog(conf)
    try:
        versions = reopened.list_versions(ListModelVersionsRequest(model_id="m")).versions
        assert sorted(v.model_version for v in versions) == ["v1", "v2"]
        reopened.forget("m", "v1", "guest", "9999")
        assert [v.model_version for v in reopened.list_versions(ListModelVersionsRequest(model_id="m")).versions] == [
            "v2"
        ]
    finally:
        reopened.close()
