"""Models FATE-Flow wrote: version directories placed straight into the agents' model_local_cache of a
running federation, never imported through the registry, on which every `flow` command works.

FATE-Flow 1.11 trains a model and writes each party's slice into that party's cache (a parent, with
checkpoints), then deploys it (a child: ``parent: false`` and ``parent_info`` in its Pipeline, no
checkpoints). The coordinator learns about them from the parties: on a catalog miss it asks every party
for the version; at its start it asks them for everything they hold, and every maintenance period for
what they hold and never used.
Real processes: a coordinator, agents for guest 9999, host 10000 and arbiter 10001, and a FATE-Serving
test server for the guest and the host. That federation's maintenance period is an hour, so it learns
only on a miss and at its start; a second one, without FATE-Serving, runs its maintenance every second.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from client.sdk import RegistryClient
from fate_registry.errors import RegistryError
from fate_registry.fate.pipeline_pb2 import Pipeline
from fate_registry.fate_models import ModelSpec, write_federation
from fate_registry.identity import job_ids
from fate_registry.v1 import registry_pb2 as pb
from party_agent.pipeline import PIPELINE_PATH
from tests.conftest import GeneratedModel
from tests.faults.state import PARTY_OF, ROLES, TIMEOUTS, WAIT, assert_consistent, write_migrate_conf
from tests.flow_cli import flow, write_conf
from tests.support.cluster import COORDINATOR, Cluster, agent_name, wait_until
from tests.support.serving_process import ServingTestServer, serving_servers

ARBITER = PARTY_OF["arbiter"]
NOT_FOUND = 100
ANSWER_WITHIN = 10.0  # seconds: a miss is answered within this, whether every party can be reached or not
HOUR = 3600


@pytest.fixture(scope="module")
def servings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServingTestServer]]:
    root = tmp_path_factory.mktemp("servings")
    with serving_servers(root, (PARTY_OF["guest"], PARTY_OF["host"])) as started:
        yield started


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, servings: dict[str, ServingTestServer]) -> Iterator[Cluster]:
    """No maintenance pass within a test: the coordinator learns of a version on a miss, or at its start."""
    parties: dict[str, dict[str, Any]] = {party: {} for party in PARTY_OF.values()}
    for party, server in servings.items():
        parties[party]["servings"] = [server.address]
    timeouts = {**TIMEOUTS, "maintenance_period": HOUR}
    with Cluster.start(tmp_path_factory.mktemp("cluster"), parties, timeouts) as started:
        yield started


@pytest.fixture(scope="module")
def syncing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Maintenance every second: the coordinator asks the parties what they hold that often."""
    parties: dict[str, dict[str, Any]] = {party: {} for party in PARTY_OF.values()}
    with Cluster.start(tmp_path_factory.mktemp("syncing"), parties, TIMEOUTS) as started:
        yield started


def write_fate_flow_child(parent_dir: Path, child: str) -> Path:
    """What FATE-Flow 1.11's deploy leaves on a party (fate_flow.md §6.9): the parent's components
    without its checkpoints, and the Pipeline of a child (its version, ``parent: false``, ``parent_info``)."""
    child_dir = parent_dir.parent / child
    shutil.copytree(parent_dir, child_dir, ignore=lambda d, _: ["checkpoint"] if Path(d) == parent_dir else [])
    path = child_dir / PIPELINE_PATH
    pipeline = Pipeline.FromString(path.read_bytes())
    train_conf = json.loads(pipeline.train_runtime_conf)
    train_conf["job_parameters"]["common"]["model_version"] = child
    on_party = json.loads(pipeline.runtime_conf_on_party)
    on_party["job_parameters"]["model_version"] = child
    pipeline.train_runtime_conf = json.dumps(train_conf).encode()
    pipeline.runtime_conf_on_party = json.dumps(on_party).encode()
    pipeline.model_version = child
    pipeline.parent = False
    parent_info = {"parent_model_id": pipeline.model_id, "parent_model_version": parent_dir.name}
    pipeline.parent_info = json.dumps(parent_info).encode()
    path.write_bytes(pipeline.SerializeToString())
    document = json_format.MessageToDict(pipeline, always_print_fields_with_no_presence=True)
    path.with_name("Pipeline.json").write_text(json.dumps(document), encoding="utf-8")
    return child_dir


Trains = Callable[[Cluster], tuple[GeneratedModel, str]]


@pytest.fixture
def fate_flow_trains() -> Iterator[Trains]:
    """FATE-Flow trains a model (a parent with checkpoints in every party's cache of a federation) and deploys
    it (a child); returns the parent and the child's version.

    After the test, even a failed one, every slice written is used once (get-model-info --detail makes each
    party hash its slices): the state check after each test wants a row for every directory."""
    written: list[tuple[Cluster, str, str]] = []

    def trains(federation: Cluster) -> tuple[GeneratedModel, str]:
        spec = ModelSpec(roles=ROLES, checkpoints=2)
        parents = write_federation({party: federation.model_cache(party) for party in federation.parties}, spec)
        child = job_ids.next()
        for parent_dir in parents.values():
            write_fate_flow_child(parent_dir, child)
        written.extend((federation, spec.model_id, version) for version in (spec.version, child))
        return GeneratedModel(spec, parents, {}), child

    yield trains
    for federation, model_id, version in written:
        with contextlib.suppress(RegistryError), RegistryClient(federation.address) as client:
            client.get_model_info(pb.GetModelInfoRequest(model_id=model_id, model_version=version, detail=True))


def model_info(federation: Cluster, model_id: str, version: str, *extra: str) -> tuple[int, dict[str, Any]]:
    return flow(federation, "model", "get-model-info", "--model-id", model_id, "--model-version", version, *extra)


def parties_of(answer: dict[str, Any]) -> set[tuple[str, str]]:
    return {(row["f_role"], str(row["f_party_id"])) for row in answer["data"]}


def every_party() -> set[tuple[str, str]]:
    return set(PARTY_OF.items())


def listed(federation: Cluster, model_id: str, *versions: str, parties: dict[str, str] = PARTY_OF) -> bool:
    """Whether ``flow model list-versions`` shows each of ``versions`` held by exactly ``parties`` (role: party)."""
    code, answer = flow(federation, "model", "list-versions", "--model-id", model_id)
    assert code == 0, answer
    found = {row["model_version"]: row["roles"] for row in answer["data"]}
    return all(found.get(version) == {role: [party] for role, party in parties.items()} for version in versions)


def hash_every_slice(federation: Cluster, model_id: str, *versions: str) -> None:
    """get-model-info --detail: every party's first use of its slices, which it hashes."""
    for version in versions:
        code, detail = model_info(federation, model_id, version, "--detail")
        assert code == 0 and parties_of(detail) == every_party(), detail


def load_conf(model_id: str, version: str) -> dict[str, Any]:
    return {
        "initiator": {"party_id": PARTY_OF["guest"], "role": "guest"},
        "role": {role: [party] for role, party in PARTY_OF.items()},
        "job_parameters": {"model_id": model_id, "model_version": version},
    }


def test_get_model_info_adopts_what_fate_flow_wrote_and_every_command_works(
    cluster: Cluster, fate_flow_trains: Trains, tmp_path: Path
) -> None:
    model, child = fate_flow_trains(cluster)

    # one party's row first: the whole version is adopted from every party that holds it
    code, guest = model_info(cluster, model.model_id, model.version, "-r", "guest", "-p", PARTY_OF["guest"])
    assert code == 0 and guest["retcode"] == 0, guest
    (row,) = guest["data"]
    assert row["f_parent"] is True and row["f_roles"] == ROLES and row["f_size"] > 0
    code, parent = model_info(cluster, model.model_id, model.version)
    assert code == 0 and parties_of(parent) == every_party(), parent
    code, deployed = model_info(cluster, model.model_id, child, "-r", "host", "-p", PARTY_OF["host"])
    assert code == 0 and parties_of(deployed) == {("host", PARTY_OF["host"])}, deployed
    assert deployed["data"][0]["f_parent"] is False
    assert deployed["data"][0]["f_parent_info"] == {
        "parent_model_id": model.model_id,
        "parent_model_version": model.version,
    }
    code, detail = model_info(cluster, model.model_id, child, "--detail")
    assert code == 0 and parties_of(detail) == every_party() and "meta" not in detail, detail
    assert all(len(row["f_manifest_digest"]) == 64 for row in detail["data"])
    assert all(row["f_train_dsl"]["components"] for row in detail["data"])

    code, listed = flow(
        cluster,
        "checkpoint",
        "list",
        "--model-id",
        model.model_id,
        "--model-version",
        model.version,
        "-r",
        "guest",
        "-p",
        PARTY_OF["guest"],
        "-cpn",
        "hetero_lr_0",
    )
    assert code == 0 and len(listed["data"]) == 2, listed
    step = listed["data"][0]["step_index"]
    code, deploy = flow(
        cluster,
        "model",
        "deploy",
        "--model-id",
        model.model_id,
        "--model-version",
        model.version,
        "--cpn-step-index",
        f"hetero_lr_0:{step}",
    )
    assert code == 0 and deploy["retcode"] == 0, deploy
    ours = deploy["data"]["model_version"]
    for version in (child, ours):  # FATE-Flow's child and the registry's load alike
        conf = write_conf(tmp_path, f"load-{version}.json", load_conf(model.model_id, version))
        code, loaded = flow(cluster, "model", "load", "-c", conf)
        assert code == 0 and loaded["retcode"] == 0, loaded
    code, migrated = flow(cluster, "model", "migrate", "-c", str(write_migrate_conf(model, tmp_path / "migrate.json")))
    assert code == 0 and migrated["retcode"] == 0, migrated

    hash_every_slice(cluster, model.model_id, model.version)  # the arbiter's parent, used by none of the above
    assert_consistent(cluster, [model.model_id])


def test_deploy_and_load_by_job_id_ask_the_parties_first(cluster: Cluster, fate_flow_trains: Trains) -> None:
    model, child = fate_flow_trains(cluster)

    code, deploy = flow(cluster, "model", "deploy", "--model-id", model.model_id, "--model-version", model.version)
    assert code == 0 and deploy["retcode"] == 0, deploy
    code, loaded = flow(cluster, "model", "load", "-j", child)  # the roles come from the guest's row
    assert code == 0 and loaded["retcode"] == 0, loaded
    assert loaded["data"]["guest"] == {PARTY_OF["guest"]: 0} and loaded["data"]["host"] == {PARTY_OF["host"]: 0}

    hash_every_slice(cluster, model.model_id, child)  # the arbiter's child, used by none of the above
    assert_consistent(cluster, [model.model_id])


def test_a_miss_is_quick_and_passes_over_a_party_that_cannot_be_reached(
    cluster: Cluster, fate_flow_trains: Trains
) -> None:
    begun = time.monotonic()
    code, answer = model_info(cluster, "guest-1#host-2#model", "20240101000000000000")
    assert code != 0 and answer["retcode"] == NOT_FOUND, answer
    assert time.monotonic() - begun < ANSWER_WITHIN

    cluster.kill(agent_name(ARBITER))
    model, child = fate_flow_trains(cluster)
    begun = time.monotonic()
    code, answer = model_info(cluster, model.model_id, model.version)
    assert time.monotonic() - begun < ANSWER_WITHIN
    assert code == 0 and parties_of(answer) == every_party() - {("arbiter", ARBITER)}, answer

    cluster.restart(agent_name(ARBITER))

    def arbiter_found() -> bool:  # a miss of its own slice asks again (once the channel is back)
        code, _ = model_info(cluster, model.model_id, model.version, "-r", "arbiter", "-p", ARBITER)
        return code == 0

    wait_until(arbiter_found, WAIT, "the arbiter's slice found on a miss")
    hash_every_slice(cluster, model.model_id, model.version, child)
    assert_consistent(cluster, [model.model_id])


def test_a_restarted_coordinator_catalogs_what_the_parties_hold(cluster: Cluster, fate_flow_trains: Trains) -> None:
    cluster.stop(COORDINATOR)
    model, child = fate_flow_trains(cluster)  # while the coordinator is away
    cluster.restart(COORDINATOR)
    wait_until(lambda: listed(cluster, model.model_id, model.version, child), WAIT, "catalogued at start")
    hash_every_slice(cluster, model.model_id, model.version, child)
    assert_consistent(cluster, [model.model_id])


def test_the_maintenance_loop_catalogs_what_fate_flow_writes_and_a_party_that_was_away(
    syncing: Cluster, fate_flow_trains: Trains
) -> None:
    model, child = fate_flow_trains(syncing)
    wait_until(lambda: listed(syncing, model.model_id, model.version, child), WAIT, "catalogued while running")

    syncing.kill(agent_name(ARBITER))
    later, later_child = fate_flow_trains(syncing)
    reachable = {role: party for role, party in PARTY_OF.items() if party != ARBITER}
    wait_until(lambda: listed(syncing, later.model_id, later.version, later_child, parties=reachable), WAIT, "the two")
    syncing.restart(agent_name(ARBITER))
    wait_until(lambda: listed(syncing, later.model_id, later.version, later_child), WAIT, "the arbiter's too")

    hash_every_slice(syncing, model.model_id, model.version, child, later.version, later_child)
    assert_consistent(syncing, [model.model_id])
