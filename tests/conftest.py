"""Shared fixtures: a federation of real processes and generated FATE models packed as FATE packs them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from client.settings import ADDRESS_ENV, CLIENT_CONF_ENV, TLS_ENVS
from fate_registry.fate_models import ModelSpec, build_fate_archive, write_federation
from tests.support import services
from tests.support.federation import LocalFederation
from tests.support.serving_process import ServingTestServer, serving_servers


@pytest.fixture(autouse=True, scope="session")
def _flow_settings_of_the_tests(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """``flow`` as the tests run it reads no settings of whoever runs them: no ``flow init`` of theirs, no
    address or TLS variables of their shell (each test sets what it means)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CLIENT_CONF_ENV, str(tmp_path_factory.mktemp("flow-settings") / "flow.json"))
        for name in (ADDRESS_ENV, *TLS_ENVS):
            patch.delenv(name, raising=False)
        yield


@pytest.fixture(autouse=True)
def _catalog_agrees_with_the_parties(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test of tests/e2e and tests/faults: the fault suite's state check on every federation the
    tests started (tests/faults/state.py), so no path can leave the catalog and the parties apart unnoticed."""
    yield
    from tests.faults.state import assert_every_started_federation_consistent  # here: state imports this module

    assert_every_started_federation_consistent()  # reads only the federations tests/e2e and tests/faults started


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    """Coordinator + agents 9999 (guest) and 10000 (host and arbiter), each a process."""
    with LocalFederation.start(tmp_path_factory.mktemp("federation")) as fed:
        yield fed


@pytest.fixture(scope="module")
def servings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServingTestServer]]:
    """FATE-Serving test servers of parties 9999 and 10000, each a process."""
    with serving_servers(tmp_path_factory.mktemp("servings"), ("9999", "10000")) as started:
        yield started


@pytest.fixture(scope="module")
def serving_federation(
    tmp_path_factory: pytest.TempPathFactory, servings: dict[str, ServingTestServer]
) -> Iterator[LocalFederation]:
    """:func:`federation` with each party's FATE-Serving (:func:`servings`)."""
    parties = {party: {"servings": [server.address]} for party, server in servings.items()}
    with LocalFederation.start(tmp_path_factory.mktemp("fed"), parties=parties) as federation:
        yield federation


@pytest.fixture(scope="module")
def synced_federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    """A federation with ``enable_model_store`` on a redis model store."""
    root = tmp_path_factory.mktemp("sync")
    with services.redis_server(root / "redis") as server:
        extra = {"enable_model_store": True, "model_store_address": {"storage": "redis", **server.settings()}}
        with LocalFederation.start(root / "fed", extra_conf=extra) as fed:
            yield fed


@dataclass(frozen=True)
class GeneratedModel:
    spec: ModelSpec
    version_dirs: dict[tuple[str, str], Path]  # (role, party_id) -> the version directory written
    archives: dict[tuple[str, str], Path]  # (role, party_id) -> FATE-Flow-layout archive of it

    @property
    def model_id(self) -> str:
        return self.spec.model_id

    @property
    def version(self) -> str:
        return self.spec.version


def generate_model(root: Path, **spec_args: object) -> GeneratedModel:
    spec = ModelSpec(**spec_args)  # type: ignore[arg-type]
    parties = sorted({str(p) for ids in spec.roles.values() for p in ids})
    written = write_federation({pid: root / "source" / pid for pid in parties}, spec)
    archives = {
        key: build_fate_archive(path, root / "archives", key[0], int(key[1]), spec.model_id, spec.version)
        for key, path in written.items()
    }
    return GeneratedModel(spec, written, archives)


@pytest.fixture
def model(tmp_path: Path) -> GeneratedModel:
    """A fresh HeteroLR model (guest 9999, host 10000, arbiter 10000) with two checkpoints."""
    return generate_model(tmp_path, checkpoints=2)
