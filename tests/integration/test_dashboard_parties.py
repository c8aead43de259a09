"""What the dashboard shows of each party, against a real federation (coordinator, agents, a FATE-Serving test
server and a Redis model store, each a process): the agents' ``GetStoredCopy`` and ``DescribeParty``, the version
page's files and stored copies, and the health page with a party stopped by PID."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from fate_registry.agent.v1 import agent_pb2, agent_pb2_grpc
from fate_registry.v1.common_pb2 import PartyModelRef
from registry_server.dashboard.health import DEADLINE_SECONDS
from tests.conftest import GeneratedModel, generate_model
from tests.dashboard_pages import dashboard_page, tables
from tests.fate_http import call, import_archive
from tests.support import services
from tests.support.federation import LocalFederation
from tests.support.serving_process import serving_servers

CALL_TIMEOUT = 5.0
SLACK = 3.0  # seconds a page may take beyond its deadline on a loaded machine
BACK_WITHIN = 30.0


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    root = tmp_path_factory.mktemp("dashboard-parties")
    with (
        services.redis_server(root / "redis", password="redis-secret-not-shown") as redis,
        serving_servers(root / "servings", ("9999",)) as servings,
    ):
        coordinator = {"address": "127.0.0.1:0", "http": {"address": "127.0.0.1:0"}, "call_timeout": CALL_TIMEOUT}
        extra = {"coordinator": coordinator, "model_store_address": {"storage": "redis", **redis.settings()}}
        parties = {"9999": {"servings": [servings["9999"].address]}, "10000": {}}
        with LocalFederation.start(root / "fed", parties=parties, extra_conf=extra) as federation:
            yield federation


@pytest.fixture(scope="module")
def model(fed: LocalFederation, tmp_path_factory: pytest.TempPathFactory) -> GeneratedModel:
    model = generate_model(tmp_path_factory.mktemp("model"))
    for (role, party), archive in model.archives.items():
        fields = {"role": role, "party_id": party, "model_id": model.model_id, "model_version": model.version}
        assert import_archive(fed.http_address, fields, archive).json()["retcode"] == 0
    return model


@pytest.fixture(scope="module")
def agent_9999(fed: LocalFederation) -> Iterator[agent_pb2_grpc.PartyAgentServiceStub]:
    with grpc.insecure_channel(fed.agent_address("9999")) as channel:
        yield agent_pb2_grpc.PartyAgentServiceStub(channel)


def _guest(model: GeneratedModel) -> PartyModelRef:
    return PartyModelRef(role="guest", party_id="9999", model_id=model.model_id, model_version=model.version)


def _files_on_disk(directory: Path) -> dict[str, tuple[int, str]]:
    return {
        str(path.relative_to(directory)): (path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest())
        for path in directory.rglob("*")
        if path.is_file()
    }


def test_the_stored_copy_is_absent_then_present_with_the_digest_recorded_when_stored(
    fed: LocalFederation, model: GeneratedModel, agent_9999: agent_pb2_grpc.PartyAgentServiceStub
) -> None:
    request = agent_pb2.GetStoredCopyRequest(model=_guest(model))
    before = agent_9999.GetStoredCopy(request, timeout=10)
    assert before.engine == "redis" and not before.present and not before.sha256
    fields = {"role": "guest", "party_id": 9999, "model_id": model.model_id, "model_version": model.version}
    stored = call(fed.http_address, "/v1/model/store", {**fields, "force_update": False}).json()
    assert stored["retcode"] == 0, stored
    after = agent_9999.GetStoredCopy(request, timeout=10)
    assert after.present and after.size_bytes > 0
    assert after.sha256 == after.recorded_sha256 == stored["data"]["sha256"]

    html = dashboard_page(fed.http_address, "/version", model_id=model.model_id, model_version=model.version)
    copies = {(row[0], row[1]): row for row in tables(html)["stored-copies"]}
    assert copies["guest", "9999"][2:5] == ["redis", "present", str(after.size_bytes)]
    assert copies["guest", "9999"][5] == f"same: {after.sha256}"
    assert copies["host", "10000"][3] == "absent" and copies["arbiter", "10000"][3] == "absent"
    assert "redis-secret-not-shown" not in html


def test_the_version_page_lists_each_partys_files_with_the_sha256_of_their_bytes_on_its_disk(
    fed: LocalFederation, model: GeneratedModel
) -> None:
    html = dashboard_page(fed.http_address, "/version", model_id=model.model_id, model_version=model.version)
    found = tables(html)
    for role, party in model.version_dirs:
        directory = fed.model_cache(party) / f"{role}#{party}#{model.model_id}" / model.version  # the party's copy
        listed = {row[0]: (int(row[1]), row[2]) for row in found[f"files-{role}-{party}"]}
        assert listed == _files_on_disk(directory), (role, party)


def test_describe_party_counts_versions_and_probes_the_serving_and_the_store(
    fed: LocalFederation, model: GeneratedModel, agent_9999: agent_pb2_grpc.PartyAgentServiceStub
) -> None:
    guest = agent_9999.DescribeParty(agent_pb2.DescribePartyRequest(probe_timeout_ms=2000), timeout=10)
    assert guest.versions_held == 1  # the guest's slice
    assert 0 < guest.disk_free_bytes <= guest.disk_total_bytes
    assert [(s.reachable, s.message) for s in guest.servings] == [(True, "")]
    assert guest.model_store.target == "redis" and guest.model_store.reachable
    with grpc.insecure_channel(fed.agent_address("10000")) as channel:
        host = agent_pb2_grpc.PartyAgentServiceStub(channel).DescribeParty(agent_pb2.DescribePartyRequest(), timeout=10)
    assert host.versions_held == 2 and not host.servings  # the host's and the arbiter's slices


def test_a_party_stopped_by_pid_is_down_and_the_pages_render_within_their_deadlines(
    fed: LocalFederation, model: GeneratedModel
) -> None:
    rows = {row[0]: row for row in tables(dashboard_page(fed.http_address, "/health"))["parties"]}
    assert [rows[p][2] for p in ("9999", "10000")] == ["up", "up"]
    assert rows["9999"][5] == "1" and rows["10000"][5] == "2" and rows["9999"][3] != "never"
    assert "redis up" in rows["9999"][8] and "up" in rows["9999"][7]
    pid = fed.pids()["agent-10000"]
    os.kill(pid, signal.SIGSTOP)  # stopped, not killed: `up` would end the federation with a dead child
    try:
        start = time.monotonic()
        health = tables(dashboard_page(fed.http_address, "/health"))["parties"]
        assert time.monotonic() - start < DEADLINE_SECONDS + SLACK
        rows = {row[0]: row for row in health}
        assert rows["10000"][2].startswith("down") and rows["9999"][2] == "up"
        start = time.monotonic()
        html = dashboard_page(fed.http_address, "/version", model_id=model.model_id, model_version=model.version)
        assert time.monotonic() - start < 2 * CALL_TIMEOUT + SLACK  # the host's checkpoints are asked after
        assert "files-guest-9999" in html and "files-host-10000" not in html and "Traceback" not in html
        copies = {(row[0], row[1]): row for row in tables(html)["stored-copies"]}
        assert copies["host", "10000"][3] == "unknown" and copies["guest", "9999"][3] == "present"
    finally:
        os.kill(pid, signal.SIGCONT)
    deadline = time.monotonic() + BACK_WITHIN
    while tables(dashboard_page(fed.http_address, "/health"))["parties"][1][2] != "up":
        assert time.monotonic() < deadline, "party 10000 did not come back"
