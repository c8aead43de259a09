"""The multi-party scenario through FATE's proxy: every agent in a network namespace of its own,
reachable only through the rollsite test router, every coordinator -> agent call an eggroll Packet.

Topology (tests/support/netns.py): the coordinator, the CLI and this test in the root
namespace; the router in its own namespace with a leg to the root and one to each agent's
namespace; each agent and its FATE-Serving test server in the agent's namespace.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from client.sdk import RegistryClient
from fate_registry.errors import Reason, RegistryError
from fate_registry.health import is_serving
from fate_registry.packets import AGENT_ROLE, COORDINATOR_ROLE
from fate_registry.v1.common_pb2 import PartyModelRef
from tests.conftest import GeneratedModel, generate_model
from tests.dashboard_pages import dashboard_page, tables
from tests.flow_cli import flow, import_slices, write_conf
from tests.support.cluster import Cluster, agent_name
from tests.support.netns import Topology
from tests.support.rollsite_process import RollsiteProcess
from tests.support.serving_process import ServingTestServer

PARTIES = ("9999", "10000")
ROLES = {"guest": [9999], "host": [10000], "arbiter": [10000]}
NEW = {"guest": [99], "host": [100], "arbiter": [100]}
CALL_TIMEOUT = 8
DEPLOY_TIMEOUT_MS = 600_000  # the coordinator's default deploy_timeout, which bounds each Packet of a stream


@dataclass
class Proxied:
    cluster: Cluster
    rollsite: RollsiteProcess
    topology: Topology
    servings: dict[str, ServingTestServer]
    model: GeneratedModel
    root: Path


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    root = tmp_path_factory.mktemp("proxied")
    servings: dict[str, ServingTestServer] = {}
    with Topology.create(PARTIES) as topology:
        rollsite = RollsiteProcess.start(
            root / "rollsite", host=topology.router_ip, prefix=topology.run_in(topology.router_ns)
        )
        try:
            for party in PARTIES:
                servings[party] = ServingTestServer.start(
                    root / f"serving-{party}", prefix=topology.run_in(topology.agent_ns(party))
                )
            parties = {
                party: {
                    "address": f"{topology.agent_ip(party)}:0",
                    "servings": [servings[party].address],
                    "proxy": rollsite.address,
                }
                for party in PARTIES
            }
            prefixes = {agent_name(party): topology.run_in(topology.agent_ns(party)) for party in PARTIES}
            coordinator = {"party_id": "9999", "call_timeout": CALL_TIMEOUT}
            with Cluster.start(root / "cluster", parties, coordinator, prefixes=prefixes) as cluster:
                for party in PARTIES:
                    rollsite.set_route(party, AGENT_ROLE, cluster.agent_address(party))
                model = generate_model(root / "model", checkpoints=2)
                yield Proxied(cluster, rollsite, topology, servings, model, root)
        finally:
            for server in servings.values():
                server.stop()
            rollsite.stop()


def _roles_conf(model_id: str, version: str, roles: dict[str, list[int]] = ROLES) -> dict[str, Any]:
    return {
        "initiator": {"party_id": str(roles["guest"][0]), "role": "guest"},
        "role": {r: [str(p) for p in ids] for r, ids in roles.items()},
        "job_parameters": {"model_id": model_id, "model_version": version},
    }


def test_agents_are_reachable_only_through_the_router(proxied: Proxied) -> None:
    for party in PARTIES:
        address = proxied.cluster.agent_address(party)
        assert address.startswith(proxied.topology.agent_ip(party))
        assert not is_serving(address, timeout=2), f"agent {party} answered outside the router"


def test_the_health_page_probes_each_party_through_the_router(proxied: Proxied) -> None:
    """``DescribeParty`` is carried by the router like any call: each party up, its FATE-Serving reached."""
    rows = {row[0]: row for row in tables(dashboard_page(proxied.cluster.http_address(), "/health"))["parties"]}
    for party in PARTIES:
        assert rows[party][1].endswith(f"via the proxy {proxied.rollsite.address}")
        assert rows[party][2] == "up" and rows[party][5].isdigit() and "GiB of" in rows[party][6]
        assert rows[party][7] == f"{proxied.servings[party].address} up"


def test_import_deploy_load_bind_export_migrate_through_the_router(proxied: Proxied, tmp_path: Path) -> None:
    fed, model = proxied.cluster, proxied.model
    import_slices(proxied.cluster, model.archives, model.model_id, model.version, proxied.root)

    code, deployed = flow(fed, "model", "deploy", "--model-id", model.model_id, "--model-version", model.version)
    assert code == 0 and deployed["data"]["guest"] == {"9999": 0} and deployed["data"]["host"] == {"10000": 0}
    child = deployed["data"]["model_version"]

    code, loaded = flow(
        fed, "model", "load", "-c", write_conf(tmp_path, "load.json", _roles_conf(model.model_id, child))
    )
    assert code == 0 and loaded["data"]["guest"] == {"9999": 0} and loaded["data"]["host"] == {"10000": 0}, loaded
    assert proxied.servings["10000"].records("publishLoad")  # the agent in its namespace reached its serving

    bind = {**_roles_conf(model.model_id, child), "service_id": "svc-proxy"}
    code, bound = flow(fed, "model", "bind", "-c", write_conf(tmp_path, "bind.json", bind))
    assert code == 0 and bound == {"retcode": 0, "retmsg": "service id is svc-proxy"}, bound

    # export (the CLI's auto transfer falls back to the relay: the agent is behind the proxy)
    export = {"role": "host", "party_id": 10000, "model_id": model.model_id, "model_version": child}
    code, exported = flow(
        fed, "model", "export", "-c", write_conf(tmp_path, "export.json", {**export, "output_path": str(tmp_path)})
    )
    assert code == 0, exported
    archive = Path(exported["file"])
    assert archive.stat().st_size == exported["data"]["size"] > 0
    ref = PartyModelRef(role="host", party_id="10000", model_id=model.model_id, model_version=child)
    with RegistryClient(fed.address, transfer="direct") as client, pytest.raises(RegistryError) as refused:
        client.export_model(ref, tmp_path / "direct")
    assert refused.value.reason is Reason.NOT_IMPLEMENTED and "only through its proxy" in refused.value.message

    # import it back as another version (streamed up as PUT_DATA Packets, digest checked by the agent)
    body = {**export, "model_version": f"{child}9", "file": str(archive), "force_update": False}
    code, reimported = flow(fed, "model", "import", "-c", write_conf(tmp_path, "reimport.json", body))
    assert code == 0 and reimported["data"]["model_version"] == f"{child}9", reimported

    migrate = {
        "job_parameters": {"federated_mode": "MULTIPLE"},
        "role": ROLES,
        "execute_party": ROLES,
        "migrate_initiator": {"role": "guest", "party_id": 99},
        "migrate_role": NEW,
        "model_id": model.model_id,
        "model_version": model.version,
    }
    code, migrated = flow(fed, "model", "migrate", "-c", write_conf(tmp_path, "migrate.json", migrate))
    assert code == 0 and migrated["retcode"] == 0, migrated
    assert migrated["data"]["model_id"] == "arbiter-100#guest-99#host-100#model"

    # every call went through the router as a Packet, for each party
    seen = proxied.rollsite.decoded()
    methods = {(p.header.dst.partyId, p.header.command.name.rsplit("/", 1)[-1]) for p in seen}
    for party in PARTIES:
        for method in ("ImportModel", "PrepareDeploy", "CommitOperation", "LoadModel", "PrepareMigrate"):
            assert (party, method) in methods, (party, method)
    assert ("10000", "ExportModel") in methods and ("9999", "BindModel") in methods


def _fields(raw: bytes) -> dict[int, list[bytes | int]]:
    """A protobuf message's fields by number, decoded from the wire with no schema (varint and bytes only)."""

    def varint(at: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = raw[at]
            value |= (byte & 0x7F) << shift
            at, shift = at + 1, shift + 7
            if byte < 0x80:
                return value, at

    fields: dict[int, list[bytes | int]] = {}
    at = 0
    while at < len(raw):
        key, at = varint(at)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, at = varint(at)
            fields.setdefault(number, []).append(value)
        else:
            assert wire_type == 2, f"field {number} has wire type {wire_type}"
            size, at = varint(at)
            fields.setdefault(number, []).append(raw[at : at + size])
            at += size
    return fields


def _one(fields: dict[int, list[bytes | int]], number: int) -> bytes:
    value = fields[number][0]
    assert isinstance(value, bytes)
    return value


def test_packets_at_the_router_have_fates_layout_and_routing_fields(proxied: Proxied) -> None:
    packets = proxied.rollsite.packets()
    assert packets, "the router saw no Packet"
    for raw, metadata in packets:
        packet = _fields(raw)  # Packet: 1 header (Metadata), 2 body (Data)
        header = _fields(_one(packet, 1))
        src, dst = _fields(_one(header, 2)), _fields(_one(header, 3))  # Topic: 1 name, 2 partyId, 3 role
        assert _one(src, 3).decode() == COORDINATOR_ROLE and _one(src, 2).decode() == "9999"
        party = _one(dst, 2).decode()
        assert party in PARTIES and _one(dst, 3).decode() == AGENT_ROLE
        command = _one(_fields(_one(header, 4)), 1).decode()  # Command: 1 name
        assert command.startswith("/fate_registry.agent.v1.PartyAgentService/")
        operator = _one(header, 5).decode()
        assert operator in ("RUN", "PUT_DATA", "GET_DATA", "STOP", "KILL")
        conf = _fields(_one(header, 8))  # Conf: 1 overallTimeout, 3 packetIntervalTimeout (ms)
        assert isinstance(conf[1][0], int) and 0 < conf[1][0] <= DEPLOY_TIMEOUT_MS and conf[3] == conf[1]
        task = _fields(_one(header, 1))  # Task: 1 taskId, 2 model (1 name, 2 dataKey)
        model = _fields(_one(task, 2))
        assert _one(model, 1) == b"headers" and "x-operation-id" in json.loads(_one(model, 2))
        assert _one(_fields(_one(packet, 2)), 1)  # Data: 1 key
        assert metadata == {
            "service": AGENT_ROLE,
            "src-party-id": "9999",
            "src-role": COORDINATOR_ROLE,
            "dest-party-id": party,
            "dest-role": AGENT_ROLE,
        }


def test_a_dropped_or_delayed_party_gives_a_clear_per_party_error(proxied: Proxied, tmp_path: Path) -> None:
    fed, model = proxied.cluster, proxied.model
    code, deployed = flow(fed, "model", "deploy", "--model-id", model.model_id, "--model-version", model.version)
    assert code == 0, deployed
    load = write_conf(tmp_path, "load.json", _roles_conf(model.model_id, deployed["data"]["model_version"]))
    proxied.rollsite.set_fault("10000", drop=True)
    try:
        code, dropped = flow(fed, "model", "load", "-c", load)
    finally:
        proxied.rollsite.clear_faults()
    assert code != 0 and dropped["data"]["guest"] == {"9999": 104}, dropped  # unloaded again: all or nothing
    assert dropped["data"]["host"]["10000"] != 0
    message = dropped["data"]["detail"]["host"]["10000"]["retmsg"]
    assert "party 10000" in message and proxied.rollsite.address in message, message

    proxied.rollsite.set_fault("10000", delay=1.0)
    try:
        code, delayed = flow(fed, "model", "load", "-c", load)
    finally:
        proxied.rollsite.clear_faults()
    assert code == 0 and delayed["data"]["host"] == {"10000": 0}, delayed
