"""Prometheus metrics on real processes: the coordinator's ``/metrics`` (its HTTP address) and each agent's
(its transfer endpoint) move by what a test's calls did."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from fate_registry.v1 import registry_pb2 as pb
from fate_registry.v1 import registry_pb2_grpc
from tests.conftest import generate_model
from tests.fate_http import call, import_archive, send
from tests.metrics_scrape import moved, scrape, value
from tests.support.federation import LocalFederation

SERVICE = "fate_registry.v1.RegistryService"


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    with LocalFederation.start(tmp_path_factory.mktemp("fed")) as federation:
        yield federation


def test_calls_operations_refusals_and_gauges_are_counted(fed: LocalFederation, tmp_path: Path) -> None:
    before, agent_before = scrape(fed.http_address), scrape(fed.agent_http_address("9999"))
    model = generate_model(tmp_path)
    for (role, party), archive in model.archives.items():
        fields = {"role": role, "party_id": party, "model_id": model.model_id, "model_version": model.version}
        assert import_archive(fed.http_address, fields, archive).json()["retcode"] == 0
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes(b"PK\x03\x04 not a zip")  # refused by the agent: its data is lost
    fields = {"role": "guest", "party_id": "9999", "model_id": model.model_id, "model_version": "v-corrupt"}
    assert import_archive(fed.http_address, fields, corrupt).json()["retcode"] != 0
    ref = {"role": "guest", "party_id": "9999", "model_id": model.model_id, "model_version": model.version}
    exported = call(fed.http_address, "/v1/model/export", ref, method="GET")
    assert exported.status == 200 and exported.body.startswith(b"PK"), exported.status
    with grpc.insecure_channel(fed.address) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        for _ in range(3):
            stub.GetModelInfo(pb.GetModelInfoRequest(model_id=model.model_id, model_version=model.version))
        with pytest.raises(grpc.RpcError) as refused:
            stub.ListCheckpoints(pb.ListCheckpointsRequest())
    after, agent_after = scrape(fed.http_address), scrape(fed.agent_http_address("9999"))

    assert moved(before, after, "fate_registry_rpcs_total", service=SERVICE, method="GetModelInfo", code="OK") == 3
    code = refused.value.code().name
    assert moved(before, after, "fate_registry_rpcs_total", service=SERVICE, method="ListCheckpoints", code=code) == 1
    assert moved(before, after, "fate_registry_rpc_seconds_count", service=SERVICE, method="GetModelInfo") == 3
    assert moved(before, after, "fate_registry_operations_total", kind="import", outcome="success") == len(
        model.archives
    )
    assert moved(before, after, "fate_registry_operations_total", kind="import", outcome="failed") == 1
    assert moved(before, after, "fate_registry_archives_refused_total", reason="data_loss") == 1
    # the imports came over FATE's HTTP API: counted as calls of the service "http"
    imports = {"service": "http", "method": "ImportModel"}
    assert moved(before, after, "fate_registry_rpcs_total", **imports, code="OK") == len(model.archives)
    assert moved(before, after, "fate_registry_rpcs_total", **imports, code="DATA_LOSS") == 1
    assert moved(before, after, "fate_registry_rpc_seconds_count", **imports) == len(model.archives) + 1
    assert moved(before, after, "fate_registry_rpcs_total", service="http", method="ExportModel", code="OK") == 1
    assert value(after, "fate_registry_catalog_versions") == 1
    # the agent: the coordinator's import of its slice (one call), its bytes, its disk
    agent_service = "fate_registry.agent.v1.PartyAgentService"
    assert (
        moved(
            agent_before,
            agent_after,
            "fate_registry_rpcs_total",
            service=agent_service,
            method="ImportModel",
            code="OK",
        )
        == 1
    )
    archive_size = model.archives["guest", "9999"].stat().st_size
    assert moved(agent_before, agent_after, "fate_registry_streamed_bytes_total", direction="in") >= archive_size
    assert value(agent_after, "fate_registry_disk_free_bytes") > 0


def test_an_agent_answers_only_metrics_to_a_get(fed: LocalFederation) -> None:
    assert send(fed.agent_http_address("9999"), "GET", "/v1/model/transfer").status == 404
