"""Two coordinator replicas on one MariaDB catalog, under concurrent load, one of them killed.

A MariaDB server (``services.mariadb``), two agents and two coordinator replicas, each its own
process (:class:`Cluster`) on loopback. 200 operations (deploys, and tag additions of which some
race for the same tag from both replicas) are spread across the replicas by 16 threads; after a
half of them, one agent is paused, so the deploys in flight wait for it in prepare or in commit.
Eight more deploys, four to each replica, are sent while it is paused, so some surely wait in
prepare on both; then replica 2 is killed with SIGKILL and the agent resumed. Its lease (2 s)
expires and replica 1 takes over what it left unfinished: deploys caught preparing are rolled
back at every party, decided ones are finished, single-phase operations are closed as interrupted.

Checked afterwards, through replica 1 and the CLI's SDK: no version id handed out twice, every
successful deploy's child version in the catalog on both parties and every other one nowhere, every
tag that was added is listed, each raced tag was added once, and every operation in the log has a
final status and a final result from every party. Then ``flow`` and the SDK, given both replicas'
addresses with the dead one first, fail over to the live one.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from client.sdk import RegistryClient
from fate_registry.errors import Reason, RegistryError, Retcode
from fate_registry.v1 import registry_pb2 as pb
from fate_registry.v1.common_pb2 import PartyModelRef
from tests.conftest import GeneratedModel, generate_model
from tests.flow_cli import flow
from tests.support.cluster import COORDINATOR, Cluster, agent_name, wait_until
from tests.support.services import mariadb

REPLICA_2 = "coordinator-2"
PARTIES = ("9999", "10000")
OPERATIONS = 200
KILL_AFTER = 100
RACED_TAGS = 20  # each added from both replicas at once
HELD = 8  # deploys sent while the agent is paused, alternately to each replica: caught in prepare
FINAL = {"success", "failed", "rolled_back", "interrupted", "cancelled"}
WAIT = 60.0


@dataclass
class Outcomes:
    """What the 200 calls answered."""

    children: list[str] = field(default_factory=list)  # versions of successful deploys
    failed_deploys: int = 0
    tags_added: list[str] = field(default_factory=list)
    raced_refused: int = 0  # raced tag additions refused because the other replica's came first
    cut: int = 0  # calls replica 2 never answered (it was killed under them)
    unconfirmed: int = 0  # deploys committed whose commit a party had not confirmed when answered
    # deploys the other replica took over because this one's lease lapsed (a stall longer than the 2 s
    # lease on a loaded machine): answered CANCELLED, finished by the other replica (checked in the log)
    taken_over: int = 0
    done: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with mariadb(tmp_path / "mariadb", password="replica-test-pw") as db:
        catalog = {"engine": "mysql", "name": db.database, "user": db.user, "password": db.password}
        conf = {
            "database": {**catalog, "host": db.host, "port": db.port, "max_connections": 32},
            "lease_seconds": 2,
            "maintenance_period": 1,
            # Longer than the agent may stay paused (the wait for deploys in prepare, up to WAIT, on a
            # loaded CI machine): a deploy of the surviving replica must wait for it, not time out.
            "deploy_timeout": 2 * WAIT,
            "call_timeout": 10,
        }
        with Cluster.start(tmp_path / "cluster", {p: {} for p in PARTIES}, conf) as started:
            started.add_replica(REPLICA_2)
            yield started


@pytest.fixture
def parent(cluster: Cluster, tmp_path: Path) -> GeneratedModel:
    model = generate_model(tmp_path / "model")
    with RegistryClient(cluster.address) as client:
        for (role, party), archive in model.archives.items():
            target = PartyModelRef(role=role, party_id=party, model_id=model.model_id, model_version=model.version)
            client.import_model(archive, target)
    return model


def _held_id(index: int) -> str:
    """The request id of a deploy sent while the agent is paused (``index`` from OPERATIONS on)."""
    return f"held-{index}"


def _run(clients: list[RegistryClient], model: GeneratedModel, index: int, out: Outcomes) -> None:
    """Operation ``index``: the first ones add raced tags (each tag from both replicas, ``index % 2``),
    then a deploy (even) or a tag of its own (odd), on replica ``index // 2 % 2``; from OPERATIONS on,
    a held deploy (under :func:`_held_id`) on replica ``index % 2``."""
    held = index >= OPERATIONS
    replica = index % 2 if index < 2 * RACED_TAGS or held else index // 2 % 2
    client = clients[replica]
    try:
        if index < 2 * RACED_TAGS:
            tag = f"raced-{index // 2}"
            client.add_model_tag(pb.AddModelTagRequest(job_id=model.version, tag_name=tag))
            with out.lock:
                out.tags_added.append(tag)
        elif index % 2 == 0 or held:
            request = pb.DeployModelRequest(model_id=model.model_id, model_version=model.version)
            request.request_id = _held_id(index) if held else ""
            answer = client.deploy_model(request)
            with out.lock:
                if all(r.retcode == 0 for r in answer.results):
                    out.children.append(answer.model_version)
                else:
                    out.failed_deploys += 1
        else:
            client.add_model_tag(pb.AddModelTagRequest(job_id=model.version, tag_name=f"tag-{index}"))
            with out.lock:
                out.tags_added.append(f"tag-{index}")
    except RegistryError as exc:
        with out.lock:
            if exc.reason is Reason.MODEL_EXISTS and index < 2 * RACED_TAGS:
                out.raced_refused += 1
            elif exc.reason is Reason.PARTY_UNAVAILABLE and replica == 1:
                out.cut += 1
            elif exc.reason is Reason.PARTY_UNAVAILABLE and "did not confirm yet" in exc.message:
                out.unconfirmed += 1  # committed; the paused agent's confirmation is awaited
            elif exc.reason is Reason.CANCELLED and "taken over by another coordinator replica" in exc.message:
                out.taken_over += 1
            else:
                raise
    finally:
        with out.lock:
            out.done += 1


def _operations(client: RegistryClient, model_id: str) -> list[pb.Operation]:
    """The whole operation log of the model, paged."""
    operations: list[pb.Operation] = []
    token = ""
    for _ in range(100):
        page = client.list_operations(pb.ListOperationsRequest(model_id=model_id, page_size=50, page_token=token))
        operations.extend(page.operations)
        token = page.next_page_token
        if not token:
            return operations
    raise AssertionError("the operation log did not end within 100 pages")


def _finished(operations: list[pb.Operation]) -> list[pb.Operation]:
    """The operations once every one has a final status, else none."""
    return operations if all(op.status in FINAL for op in operations) else []


def _versions(client: RegistryClient, model_id: str) -> list[pb.ModelVersion]:
    versions: list[pb.ModelVersion] = []
    token = ""
    for _ in range(100):
        page = client.list_model_versions(
            pb.ListModelVersionsRequest(model_id=model_id, page_size=40, page_token=token)
        )
        versions.extend(page.versions)
        token = page.next_page_token
        if not token:
            return versions
    raise AssertionError("the version list did not end within 100 pages")


def test_two_replicas_share_one_catalog_and_take_over_a_killed_one(cluster: Cluster, parent: GeneratedModel) -> None:
    out = Outcomes()
    clients = [RegistryClient(cluster.address_of(COORDINATOR)), RegistryClient(cluster.address_of(REPLICA_2))]
    try:
        with ThreadPoolExecutor(max_workers=16) as pool, ThreadPoolExecutor(max_workers=HELD) as held_pool:
            futures = [pool.submit(_run, clients, parent, i, out) for i in range(OPERATIONS)]
            wait_until(lambda: out.done >= KILL_AFTER, WAIT, "half of the operations done")
            # The deploys in flight may all be past prepare, waiting for the paused agent in commit, and
            # hold every thread of the pool: the held deploys, sent from threads of their own once the
            # agent is paused, are the ones surely caught in prepare, on both replicas.
            cluster.pause(agent_name("10000"))
            held = range(OPERATIONS, OPERATIONS + HELD)
            held_ids = {_held_id(i) for i in held}
            futures += [held_pool.submit(_run, clients, parent, i, out) for i in held]
            wait_until(
                lambda: (
                    sum(
                        op.status == "preparing" and op.operation_id in held_ids
                        for op in _operations(clients[0], parent.model_id)
                    )
                    == HELD
                ),
                WAIT,
                "the held deploys waiting in prepare on both replicas",
            )
            cluster.kill(REPLICA_2)
            cluster.resume(agent_name("10000"))
            for future in futures:
                future.result(timeout=WAIT)

        survivor = clients[0]
        operations = wait_until(
            lambda: _finished(_operations(survivor, parent.model_id)),
            WAIT,
            "every operation finished or rolled back by the surviving replica",
        )
    finally:
        for client in clients:
            client.close()

    # replica 2 was killed mid-way: its calls were cut, and its deploys caught preparing rolled back
    assert out.cut > 0
    assert any(op.status == "rolled_back" for op in operations if op.operation == "deploy")
    assert out.done == OPERATIONS + HELD

    with RegistryClient(cluster.address) as client:
        versions = _versions(client, parent.model_id)
        tags = [t.name for t in client.all_model_tags(parent.version).tags]  # paged: over 100 tags

    # no version handed out twice; the catalog holds exactly the children of the deploys logged as a success
    listed = [v.model_version for v in versions]
    assert len(listed) == len(set(listed))
    assert len(out.children) == len(set(out.children))
    assert out.failed_deploys == 0
    children = set(listed) - {parent.version}
    assert set(out.children) <= children
    deploys = [op for op in operations if op.operation == "deploy"]
    assert len(children) == sum(1 for op in deploys if op.status == "success")
    for version in versions:
        assert {p.party_id for p in version.parties} == set(PARTIES), version

    # no lost tag, and each raced tag added exactly once
    assert set(out.tags_added) <= set(tags)
    assert len(tags) == len(set(tags))
    assert {f"raced-{i}" for i in range(RACED_TAGS)} <= set(tags)
    assert out.raced_refused == RACED_TAGS

    # every operation's log is complete: a final status, an end time, a final result from every party
    assert len(deploys) >= len(out.children)
    for op in operations:
        assert op.status in FINAL, op
        assert op.end_time.ToMilliseconds() > 0, op
        assert all(r.retcode != Retcode.RUNNING for r in op.results), op
    for op in deploys:
        assert {r.party_id for r in op.results} == set(PARTIES), op

    # the CLI and the SDK, given both replicas with the dead one first, fail over to the live one:
    # a read, and a tag (not safe to repeat, but the dead replica refused the connection)
    both = _Addresses(f"{cluster.address_of(REPLICA_2)},{cluster.address}")
    code, added = flow(both, "model", "tag-model", "-j", parent.version, "-t", "after-failover")
    assert (code, added["retcode"]) == (0, 0), added
    code, listed_tags = flow(both, "model", "tag-list", "-j", parent.version)
    assert code == 0 and "after-failover" in json.dumps(listed_tags["data"]), listed_tags
    with RegistryClient(both.address) as client:
        info = client.get_model_info(pb.GetModelInfoRequest(model_id=parent.model_id, model_version=parent.version))
        assert client.address == cluster.address
        # a deploy sent twice under one request id is done once, and answered alike
        again = pb.DeployModelRequest(model_id=parent.model_id, model_version=parent.version, request_id="once-1")
        first, second = client.deploy_model(again), client.deploy_model(again)
        logged = _operations(client, parent.model_id)
    assert {m.party_id for m in info.models} == set(PARTIES)
    assert first.model_version and (second.model_version, second.results) == (first.model_version, first.results)
    assert [op.status for op in logged if op.operation_id == "once-1"] == ["success"]
    assert len([op for op in logged if op.operation == "deploy"]) == len(deploys) + 1


@dataclass(frozen=True)
class _Addresses:
    address: str
