"""One truth: a migrated model is catalogued like any other, and a deployed child's row reads the same from
the catalog as from its party.

After `flow model migrate` (9999/10000 -> 99/100) the new slices stay on the agents of 9999 and 10000 under
their new party ids; every command reaches them there: model info, list-versions, export, deploy, load,
tags, delete. The catalog and the parties agree after each step (tests/faults/state.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fate_registry.identity import gen_model_id
from tests.conftest import GeneratedModel, generate_model
from tests.faults.state import assert_consistent, import_everywhere
from tests.flow_cli import flow, write_conf
from tests.support.cluster import Cluster
from tests.support.serving_process import ServingTestServer

OLD = {"guest": [9999], "host": [10000], "arbiter": [10000]}
NEW = {"guest": [99], "host": [100], "arbiter": [100]}
NEW_MODEL_ID = gen_model_id(NEW)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, servings: dict[str, ServingTestServer]) -> Iterator[Cluster]:
    parties = {party: {"servings": [server.address]} for party, server in servings.items()}
    with Cluster.start(tmp_path_factory.mktemp("cluster"), parties) as started:
        yield started


@pytest.fixture(scope="module")
def parent(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> GeneratedModel:
    return import_everywhere(cluster, generate_model(tmp_path_factory.mktemp("model"), roles=OLD))


def _info(cluster: Cluster, model_id: str, version: str, *extra: str) -> list[dict[str, Any]]:
    code, answer = flow(cluster, "model", "get-model-info", "--model-id", model_id, "--model-version", version, *extra)
    assert code == 0, answer
    rows: list[dict[str, Any]] = answer["data"]
    return rows


def test_a_deployed_childs_row_is_the_same_from_the_catalog_and_from_its_party(
    cluster: Cluster, parent: GeneratedModel
) -> None:
    code, deployed = flow(cluster, "model", "deploy", "--model-id", parent.model_id, "--model-version", parent.version)
    assert code == 0, deployed
    child = deployed["data"]["model_version"]
    for role, party in (("guest", "9999"), ("host", "10000")):
        (catalogued,) = _info(cluster, parent.model_id, child, "-r", role, "-p", party)
        (detailed,) = _info(cluster, parent.model_id, child, "-r", role, "-p", party, "--detail")
        assert catalogued["f_size"] == detailed["f_size"] > 0, (catalogued, detailed)
        for key in ("f_roles", "f_parent", "f_parent_info", "f_party_id", "f_role"):
            assert catalogued[key] == detailed[key], (key, catalogued, detailed)
        assert catalogued["f_roles"]["guest"] == [9999], catalogued  # party ids as FATE writes them
    assert_consistent(cluster, [parent.model_id])


def test_every_command_works_on_a_migrated_model(
    cluster: Cluster, parent: GeneratedModel, servings: dict[str, ServingTestServer], tmp_path: Path
) -> None:
    conf = {
        "role": OLD,
        "execute_party": OLD,
        "migrate_initiator": {"role": "guest", "party_id": 99},
        "migrate_role": NEW,
        "model_id": parent.model_id,
        "model_version": parent.version,
    }
    code, migrated = flow(cluster, "model", "migrate", "-c", write_conf(tmp_path, "migrate.json", conf))
    assert code == 0, migrated
    version = migrated["data"]["model_version"]
    assert_consistent(cluster, [parent.model_id, NEW_MODEL_ID])

    # model info and the version list: one row per new party, as FATE-Flow registers them
    rows = _info(cluster, NEW_MODEL_ID, version)
    assert {(r["f_role"], r["f_party_id"]) for r in rows} == {("guest", "99"), ("host", "100"), ("arbiter", "100")}
    (guest,) = _info(cluster, NEW_MODEL_ID, version, "-r", "guest", "-p", "99", "--detail")
    assert guest["f_roles"] == NEW and guest["f_initiator_party_id"] == "99", guest
    code, listed = flow(cluster, "model", "list-versions", "--model-id", NEW_MODEL_ID)
    assert code == 0 and [v["model_version"] for v in listed["data"]] == [version], listed

    # export the new guest slice
    export = {"role": "guest", "party_id": 99, "model_id": NEW_MODEL_ID, "model_version": version}
    export["output_path"] = str(tmp_path / "out")
    code, exported = flow(cluster, "model", "export", "-c", write_conf(tmp_path, "export.json", export))
    assert code == 0, exported
    assert Path(exported["file"]).name == f"guest#99#{NEW_MODEL_ID}_{version}.zip", exported

    # deploy, load and tag the migrated model
    code, deployed = flow(cluster, "model", "deploy", "--model-id", NEW_MODEL_ID, "--model-version", version)
    assert code == 0, deployed
    child = deployed["data"]["model_version"]
    assert {(r["f_role"], r["f_party_id"]) for r in _info(cluster, NEW_MODEL_ID, child)} == {
        ("guest", "99"),
        ("host", "100"),
        ("arbiter", "100"),
    }
    load = {
        "initiator": {"party_id": "99", "role": "guest"},
        "role": {r: [str(p) for p in ids] for r, ids in NEW.items()},
        "job_parameters": {"model_id": NEW_MODEL_ID, "model_version": child},
    }
    code, loaded = flow(cluster, "model", "load", "-c", write_conf(tmp_path, "load.json", load))
    assert code == 0 and loaded["data"]["guest"] == {"99": 0} and loaded["data"]["host"] == {"100": 0}, loaded
    published = servings["9999"].records("publishLoad")[-1]["request"]
    assert published["local"] == {"role": "guest", "partyId": "99"}, published
    code, tagged = flow(cluster, "model", "tag-model", "-j", child, "-t", "migrated")
    assert code == 0, tagged
    code, tags = flow(cluster, "model", "tag-list", "-j", child)
    assert code == 0 and [t["name"] for t in tags["data"]["tags"]] == ["migrated"], tags
    assert_consistent(cluster, [parent.model_id, NEW_MODEL_ID])

    # delete every slice of the migrated version: gone from the parties and from the catalog
    for role, party in (("guest", "99"), ("host", "100"), ("arbiter", "100")):
        args = ["--model-id", NEW_MODEL_ID, "--model-version", version, "-r", role, "-p", party]
        code, deleted = flow(cluster, "model", "delete", *args)
        assert code == 0, deleted
    code, gone = flow(cluster, "model", "get-model-info", "--model-id", NEW_MODEL_ID, "--model-version", version)
    assert code != 0 and not gone.get("data"), gone
    states = assert_consistent(cluster, [parent.model_id, NEW_MODEL_ID])
    assert all(version not in {v for _, v in state.versions(NEW_MODEL_ID)} for state in states.values())


def test_a_migrate_to_a_party_of_this_federation_is_refused(
    cluster: Cluster, parent: GeneratedModel, tmp_path: Path
) -> None:
    """The slice would stay on the agent of 9999 while calls for 10000 go to 10000's agent: refused first."""
    conf = {
        "role": OLD,
        "execute_party": OLD,
        "migrate_initiator": {"role": "guest", "party_id": 10000},
        "migrate_role": {"guest": [10000], "host": [9999], "arbiter": [9999]},
        "model_id": parent.model_id,
        "model_version": parent.version,
    }
    code, answer = flow(cluster, "model", "migrate", "-c", write_conf(tmp_path, "swap.json", conf))
    assert code != 0 and "is a party of this federation" in json.dumps(answer), answer
    assert_consistent(cluster, [parent.model_id])
