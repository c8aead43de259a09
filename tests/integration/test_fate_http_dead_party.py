"""FATE's clients when a party is down: the FATE-Flow HTTP API answers in FATE's shape, the registry's all or
nothing said in the retmsg, an export never HTTP 200 (real coordinator and agents; one agent killed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from registry_server.fate_http.routes import ALL_OR_NOTHING
from tests.conftest import GeneratedModel, generate_model
from tests.fate_http import call, import_archive
from tests.support.cluster import Cluster, agent_name

DEAD = "10000"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with Cluster.start(tmp_path / "cluster", {"9999": {}, DEAD: {}}) as started:
        yield started


@pytest.fixture
def model(cluster: Cluster, tmp_path: Path) -> GeneratedModel:
    generated = generate_model(tmp_path / "model")
    for (role, party), archive in generated.archives.items():
        fields = {"role": role, "party_id": party, "model_id": generated.model_id, "model_version": generated.version}
        assert import_archive(cluster.http_address(), fields, archive).json()["retcode"] == 0
    return generated


def test_a_dead_party_fails_a_deploy_on_every_party_and_an_export_is_503(
    cluster: Cluster, model: GeneratedModel
) -> None:
    cluster.kill(agent_name(DEAD))
    address = cluster.http_address()
    deployed = call(address, "/v1/model/deploy", {"model_id": model.model_id, "model_version": model.version}).json()
    assert deployed["retcode"] == 101 and deployed["retmsg"] == ALL_OR_NOTHING, deployed
    assert deployed["data"]["host"][DEAD] != 0 and deployed["data"]["detail"]["host"][DEAD]["retcode"] == 105
    ref = {"role": "host", "party_id": DEAD, "model_id": model.model_id, "model_version": model.version}
    exported = call(address, "/v1/model/export", ref, method="GET")
    assert exported.status == 503 and exported.json()["retcode"] == 105
    assert "Content-Disposition" not in exported.headers
    alive = call(address, "/v1/model/export", {**ref, "role": "guest", "party_id": "9999"}, method="GET")
    assert alive.status == 200 and alive.body[:2] == b"PK"
