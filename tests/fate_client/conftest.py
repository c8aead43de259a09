"""FATE's own 1.11 client against a federation of real processes serving FATE-Flow's HTTP API.

The federation: ``fate-registry up`` (coordinator, agents 9999 and 10000) with ``coordinator.http`` on a
free port forwarding to the upstream stand-in (:mod:`tests.support.fate_flow_upstream`), a redis model store
(for ``--to-database`` / ``--from-database``) and a FATE-Serving test server per party. The client: the
PyPI ``fate-client`` 1.11.3.post1 in ``.venv-fate-client`` (``scripts/install_fate_client.sh``); these
tests fail, never skip, when it is missing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import GeneratedModel, generate_model
from tests.support import services
from tests.support.fate_client import FateClient, coordinator_with_http, require_venv
from tests.support.fate_flow_upstream import Upstream, upstream_server
from tests.support.federation import LocalFederation
from tests.support.serving_process import ServingTestServer, serving_servers

ROLES = {"guest": [9999], "host": [10000], "arbiter": [10000]}


@dataclass(frozen=True)
class HttpFederation:
    """A federation and the ``host:port`` of its coordinator's HTTP API."""

    federation: LocalFederation
    http_address: str
    servings: dict[str, ServingTestServer]
    upstream: Upstream


@pytest.fixture(scope="session")
def fate_client_venv() -> Path:
    return require_venv()  # raises (the test fails) when the client is not installed


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with upstream_server() as server:
        yield server


@pytest.fixture(scope="module")
def http_federation(
    tmp_path_factory: pytest.TempPathFactory, fate_client_venv: Path, upstream: Upstream
) -> Iterator[HttpFederation]:
    root = tmp_path_factory.mktemp("http-fed")
    with (
        serving_servers(root / "serving", ("9999", "10000")) as servings,
        services.redis_server(root / "redis") as redis,
    ):
        conf = {
            "coordinator": coordinator_with_http(upstream=upstream.url),
            "model_store_address": {"storage": "redis", **redis.settings()},
        }
        parties = {party: {"servings": [server.address]} for party, server in servings.items()}
        with LocalFederation.start(root / "fed", parties=parties, extra_conf=conf) as fed:
            yield HttpFederation(fed, fed.http_address, servings, upstream)


@pytest.fixture(scope="module")
def client(http_federation: HttpFederation, tmp_path_factory: pytest.TempPathFactory) -> FateClient:
    """The 1.11 client after ``flow init --ip --port`` and ``pipeline init`` with the HTTP address."""
    fate = FateClient.create(tmp_path_factory.mktemp("fate-client"))
    fate.init(http_federation.http_address)
    return fate


def conf_file(directory: Path, name: str, body: dict[str, Any]) -> str:
    """A ``-c`` conf for the 1.11 CLI: an absolute path (a relative ``file`` crashes that CLI)."""
    path = (directory / name).resolve()
    path.write_text(json.dumps(body), encoding="utf-8")
    return str(path)


def import_conf(model: GeneratedModel, role: str, party: str, **extra: Any) -> dict[str, Any]:
    return {
        "role": role,
        "party_id": int(party),
        "model_id": model.model_id,
        "model_version": model.version,
        "file": str(model.archives[role, party].resolve()),
        "force_update": False,
        **extra,
    }


def import_with_flow(client: FateClient, model: GeneratedModel, directory: Path) -> None:
    """Every party's slice through the 1.11 ``flow model import``, each answer checked."""
    for role, party in model.archives:
        code, answer = client.flow(
            "model", "import", "-c", conf_file(directory, f"import-{role}.json", import_conf(model, role, party))
        )
        assert code == 0 and answer["retcode"] == 0, answer


@pytest.fixture(scope="module")
def imported(client: FateClient, tmp_path_factory: pytest.TempPathFactory) -> GeneratedModel:
    """A HeteroLR model (guest 9999, host and arbiter 10000, three checkpoints) imported by the 1.11 CLI."""
    root = tmp_path_factory.mktemp("model")
    model = generate_model(root, roles=ROLES, checkpoints=3)
    import_with_flow(client, model, root)
    return model


def guest_model(model_id: str, version: str) -> list[str]:
    """The options naming the guest 9999's slice of a model version, as the 1.11 CLI takes them."""
    return ["--model-id", model_id, "--model-version", version, "-r", "guest", "-p", "9999"]


def load_conf(model_id: str, version: str, **extra: Any) -> dict[str, Any]:
    """FATE's publish_load_model.json (and, with ``service_id``, bind_model_service.json)."""
    return {
        "initiator": {"party_id": "9999", "role": "guest"},
        "role": {role: [str(p) for p in ids] for role, ids in ROLES.items()},
        "job_parameters": {"model_id": model_id, "model_version": version},
        **extra,
    }
