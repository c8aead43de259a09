"""The catalog's version list on a real SQLite file and a real MariaDB: each filter (model id, party, role, tag, state),
newest first, keyset pages; a rare match behind thousands of versions is found; the state follows load, bind,
unbind and unload as the catalog records them; a catalog of an earlier release (no state, no new indexes) opens.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from fate_registry.config import DatabaseConf
from fate_registry.errors import Reason, RegistryError
from fate_registry.v1.common_pb2 import PartyModelInfo
from fate_registry.v1.registry_pb2 import ListModelVersionsRequest, ModelVersion
from registry_server.catalog import Catalog, ModelFilter
from tests.support.services import MariaDB, mariadb

MODEL = "arbiter-10000#guest-9999#host-10000#model"
OTHER_MODEL = "guest-7#host-8#model"
CROWD = 6000  # more than the 5,000 versions the models page used to scan for a match
BATCH = 500


@pytest.fixture(scope="module")
def maria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    with mariadb(tmp_path_factory.mktemp("mariadb"), database="registry") as server:
        yield server


def _conf(engine: str, root: Path, maria: MariaDB | None) -> DatabaseConf:
    if engine == "sqlite":
        return DatabaseConf(engine="sqlite", path=root / "catalog.db")
    assert maria is not None
    return DatabaseConf(
        "mysql",
        name=maria.database,
        user=maria.user,
        password=SecretStr(maria.password),
        host=maria.host,
        port=maria.port,
    )


@pytest.fixture(params=["sqlite", "mysql"])
def conf(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DatabaseConf]:
    maria = request.getfixturevalue("maria") if request.param == "mysql" else None
    conf = _conf(request.param, tmp_path, maria)
    yield conf
    if maria is not None:  # each test starts from an empty database
        catalog = Catalog(conf)
        with catalog.db.connection_context():
            for table in catalog.db.get_tables():
                catalog.db.execute_sql(f"DROP TABLE `{table}`")  # type: ignore[no-untyped-call]
        catalog.close()


@pytest.fixture
def catalog(conf: DatabaseConf) -> Iterator[Catalog]:
    opened = Catalog(conf)
    yield opened
    opened.close()


def _info(version: str, role: str, party: str, model: str = MODEL, parent: bool = True) -> PartyModelInfo:
    return PartyModelInfo(
        model_id=model, model_version=version, role=role, party_id=party, size_bytes=1000, parent=parent
    )


def _held(catalog: Catalog, version: str, *parties: tuple[str, str], model: str = MODEL, parent: bool = True) -> None:
    catalog.record_all([_info(version, role, party, model, parent) for role, party in parties])


def _page(catalog: Catalog, page_size: int, page_token: str = "", **where: str) -> tuple[list[ModelVersion], str]:
    answer = catalog.list_versions(ListModelVersionsRequest(page_size=page_size, page_token=page_token, **where))
    return list(answer.versions), answer.next_page_token


def _listed(catalog: Catalog, page_size: int = 100, **where: str) -> list[str]:
    """The ids of the versions ``where`` asks for: all on one page."""
    versions, token = _page(catalog, page_size, **where)
    assert not token
    return [v.model_version for v in versions]


def _crowd(catalog: Catalog, first: int, count: int) -> None:
    """``count`` parent versions held by guest 9999 and host 10000, their ids from ``first`` on (newer: higher)."""
    for start in range(first, first + count, BATCH):
        infos = [
            _info(f"v{i:07d}", role, party)
            for i in range(start, min(start + BATCH, first + count))
            for role, party in (("guest", "9999"), ("host", "10000"))
        ]
        catalog.record_all(infos)


def test_each_filter_newest_first_with_parties_bytes_state_and_tags(catalog: Catalog) -> None:
    _held(catalog, "v1", ("guest", "9999"), ("host", "10000"))
    _held(catalog, "v2", ("guest", "9999"), ("host", "10000"), parent=False)
    _held(catalog, "v3", ("guest", "7"), ("host", "8"), model=OTHER_MODEL)
    _held(catalog, "v4", ("guest", "10000"), ("host", "9999"))
    catalog.tags.add("v1", "champion", MODEL)
    catalog.tags.add("v1", "prod", MODEL)
    catalog.tags.add("v3", "prod", OTHER_MODEL)

    assert _listed(catalog) == ["v4", "v3", "v2", "v1"]
    assert _listed(catalog, model_id=OTHER_MODEL) == ["v3"]
    assert _listed(catalog, party_id="9999") == ["v4", "v2", "v1"]
    assert _listed(catalog, party_id="9999", role="guest") == ["v2", "v1"]
    assert _listed(catalog, role="host", party_id="8") == ["v3"]
    assert _listed(catalog, role="arbiter") == []
    assert _listed(catalog, tag="prod") == ["v3", "v1"]
    assert _listed(catalog, tag="prod", party_id="9999") == ["v1"]
    assert _listed(catalog, tag="nosuch") == []
    assert _listed(catalog, state="deployed") == ["v2"]
    assert _listed(catalog, state="parent", model_id=MODEL) == ["v4", "v1"]
    first = _page(catalog, 10, tag="champion")[0][0]
    assert (first.model_id, first.size_bytes, first.state, list(first.tags)) == (
        MODEL,
        2000,
        "parent",
        ["champion", "prod"],
    )
    assert [(p.role, p.party_id) for p in first.parties] == [("guest", "9999"), ("host", "10000")]


def test_an_unknown_state_is_refused_naming_the_states(catalog: Catalog) -> None:
    with pytest.raises(RegistryError) as refused:
        _page(catalog, 10, state="running")
    assert refused.value.reason is Reason.INVALID_ARGUMENT
    assert refused.value.message == "state 'running' is not one of parent, deployed, loaded, bound"


def test_a_rare_match_behind_thousands_of_versions_is_found(catalog: Catalog) -> None:
    _held(catalog, "v0000000", ("guest", "5555"), ("host", "10000"))  # the oldest
    catalog.tags.add("v0000000", "rare", MODEL)
    catalog.mark_loaded(MODEL, "v0000000", [("guest", "5555")])
    _crowd(catalog, 1, CROWD)

    assert _listed(catalog, 50, party_id="5555") == ["v0000000"]
    assert _listed(catalog, 50, party_id="5555", role="guest") == ["v0000000"]
    assert _listed(catalog, 50, party_id="5555", role="host") == []
    assert _listed(catalog, 50, tag="rare") == ["v0000000"]
    assert _listed(catalog, 50, state="loaded") == ["v0000000"]
    assert _listed(catalog, 50, party_id="10000", state="loaded") == ["v0000000"]
    common, token = _page(catalog, 50, party_id="9999")  # the party of every version
    assert [v.model_version for v in common] == [f"v{i:07d}" for i in range(CROWD, CROWD - 50, -1)] and token


def test_pages_follow_on_and_a_token_gives_the_same_page_after_newer_versions(catalog: Catalog) -> None:
    _crowd(catalog, 1, 95)
    _held(catalog, "v0000050", ("arbiter", "10000"))  # one more party row: listed once
    pages: list[list[str]] = []
    tokens: list[str] = []
    token = ""
    while True:
        versions, token = _page(catalog, 10, token, party_id="10000")
        pages.append([v.model_version for v in versions])
        if not token:
            break
        tokens.append(token)
    assert [v for page in pages for v in page] == [f"v{i:07d}" for i in range(95, 0, -1)]
    assert [len(page) for page in pages] == [10] * 9 + [5]
    _crowd(catalog, 96, 20)  # newer versions come first, and do not move the later pages
    again = _page(catalog, 10, tokens[3], party_id="10000")
    assert [v.model_version for v in again[0]] == pages[4] and again[1] == tokens[4]


def test_the_state_follows_load_bind_unbind_and_unload(catalog: Catalog) -> None:
    _held(catalog, "parent", ("guest", "9999"), ("host", "10000"))
    _held(catalog, "child", ("guest", "9999"), ("host", "10000"), parent=False)
    _held(catalog, "other", ("guest", "9999"), ("host", "10000"), parent=False)

    def state(version: str) -> str:
        return next(v.state for v in _page(catalog, 10)[0] if v.model_version == version)

    assert (state("parent"), state("child")) == ("parent", "deployed")
    catalog.mark_loaded(MODEL, "child", [("guest", "9999"), ("host", "10000")])
    assert state("child") == "loaded"
    assert [info.loaded_times for info in catalog.find(ModelFilter(MODEL, "child"))] == [1, 1]  # FATE's count
    catalog.mark_bound(MODEL, "child", "9999", "svc")
    assert state("child") == "bound"
    catalog.mark_loaded(MODEL, "other", [("guest", "9999"), ("host", "10000")])
    catalog.mark_bound(MODEL, "other", "9999", "svc")  # the service id now answers with the other version
    assert (state("child"), state("other")) == ("loaded", "bound")
    catalog.mark_bound(MODEL, "child", "9999", "svc")
    catalog.mark_unbound(MODEL, "child", ["svc"])
    assert (state("child"), state("other")) == ("loaded", "loaded")
    catalog.mark_unloaded(MODEL, "child", [("guest", "9999")])
    assert state("child") == "loaded"  # the host still has it
    catalog.mark_unloaded(MODEL, "child", [("host", "10000")])
    assert state("child") == "deployed"
    catalog.forget(MODEL, "other", "guest", "9999")
    catalog.forget(MODEL, "other", "host", "10000")
    catalog.record_all([_info("other", "guest", "9999", parent=False)])  # back: nothing loaded on it
    assert state("other") == "deployed"


def test_a_catalog_of_an_earlier_release_opens_with_states_and_indexes(conf: DatabaseConf) -> None:
    catalog = Catalog(conf)
    _held(catalog, "v1", ("guest", "9999"))
    _held(catalog, "v2", ("guest", "9999"), parent=False)
    with catalog.db.connection_context():  # as an earlier release left it: no state, none of the new indexes
        for table, index in (
            ("t_registry_model_version", "versionrow_state_create_time_model_version"),
            ("t_registry_model_version", "versionrow_model_version"),
            ("t_registry_party_model", "partymodel_party_id_role_model_version"),
        ):
            catalog.db.execute_sql(  # type: ignore[no-untyped-call]
                f"DROP INDEX {index}" if conf.engine == "sqlite" else f"DROP INDEX {index} ON {table}"
            )
        catalog.db.execute_sql("ALTER TABLE t_registry_model_version DROP COLUMN state")  # type: ignore[no-untyped-call]
        catalog.db.execute_sql("DROP TABLE t_registry_loaded_party")  # type: ignore[no-untyped-call]
    catalog.close()
    reopened = Catalog(conf)
    try:
        assert _listed(reopened, state="deployed") == ["v2"]
        assert _listed(reopened, state="parent") == ["v1"]
        with reopened.db.connection_context():
            indexes = {i.name for i in reopened.db.get_indexes("t_registry_model_version")}
        assert {"versionrow_state_create_time_model_version", "versionrow_model_version"} <= indexes
        reopened.mark_loaded(MODEL, "v2", [("guest", "9999")])
        assert _listed(reopened, state="loaded") == ["v2"]
    finally:
        reopened.close()
