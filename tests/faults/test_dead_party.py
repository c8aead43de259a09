"""A party that is down fails a multi-party operation at once, on the default timeouts, and nothing is left half-done.

Two agents (guest 9999; host and arbiter 10000), each with a FATE-Serving test server, and the coordinator's
default ``call_timeout`` (30 s) and ``deploy_timeout`` (600 s): those are for a party that answers and works.
Agent 10000 is killed by its PID before the operation, so every call to it is refused outright. The operation
must answer within a few seconds, that party 105 and the other rolled back; the abort the dead party could not
be sent is left to the maintenance loop (every second here), which delivers it once the agent is back.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fate_registry.packets import AGENT_ROLE
from tests.conftest import GeneratedModel, generate_model
from tests.faults.state import assert_consistent, import_everywhere, operations
from tests.flow_cli import flow
from tests.support.cluster import COORDINATOR, Cluster, agent_name, wait_until
from tests.support.rollsite_process import RollsiteProcess
from tests.support.serving_process import ServingTestServer, serving_servers

ROLES = {"guest": [9999], "host": [10000], "arbiter": [10000]}
DEAD = "10000"
ANSWER_WITHIN = 15.0  # seconds: half the default call_timeout (30 s), so a wait for the timeout fails the test
MULTI_PARTY_FAILED, CONNECTION_ERROR, FEDERATED_ERROR = 101, 105, 104


@pytest.fixture
def servings(tmp_path: Path) -> Iterator[dict[str, ServingTestServer]]:
    with serving_servers(tmp_path / "serving", ("9999", DEAD)) as started:
        yield started


@pytest.fixture
def cluster(tmp_path: Path, servings: dict[str, ServingTestServer]) -> Iterator[Cluster]:
    """The default timeouts; only the maintenance loop runs every second, so the test sees the abort resent."""
    parties = {party: {"servings": [server.address]} for party, server in servings.items()}
    with Cluster.start(tmp_path / "cluster", parties, {"maintenance_period": 1}) as started:
        yield started


@pytest.fixture
def parent(cluster: Cluster, tmp_path: Path) -> GeneratedModel:
    return import_everywhere(cluster, generate_model(tmp_path / "model", roles=ROLES))


def timed_flow(cluster: Cluster, *args: str) -> tuple[float, dict[str, Any]]:
    begun = time.monotonic()
    code, answer = flow(cluster, *args)
    took = time.monotonic() - begun
    print(f"flow {' '.join(args[:2])}: answered {answer['retcode']} in {took:.2f} s")  # the figure, with -s
    assert code != 0 and answer["retcode"] == MULTI_PARTY_FAILED, answer
    return took, answer


def assert_dead_party_answer(answer: dict[str, Any], roles: dict[str, list[int]]) -> None:
    """The dead party 105 naming itself; every other party rolled back (104)."""
    for role, parties in roles.items():
        for party in map(str, parties):
            detail = answer["data"]["detail"][role][party]
            if party == DEAD:
                assert detail["retcode"] == CONNECTION_ERROR and f"party {DEAD}" in detail["retmsg"], answer
            else:
                assert detail["retcode"] == FEDERATED_ERROR and "rolled back" in detail["retmsg"], answer


def settled(cluster: Cluster, model: GeneratedModel, kind: str) -> None:
    """The agent comes back; the maintenance loop delivers the abort and the operation ends 'failed'."""
    cluster.restart(agent_name(DEAD))
    wait_until(lambda: operations(cluster, model, kind)[0]["status"] == "failed", 30, f"the {kind} to be settled")


def test_a_deploy_with_a_dead_party_answers_at_once(cluster: Cluster, parent: GeneratedModel) -> None:
    cluster.kill(agent_name(DEAD))
    took, answer = timed_flow(
        cluster, "model", "deploy", "--model-id", parent.model_id, "--model-version", parent.version
    )
    assert took <= ANSWER_WITHIN, (took, answer)
    assert_dead_party_answer(answer, ROLES)
    assert "the coordinator resends it" in answer["data"]["detail"]["host"][DEAD]["retmsg"], answer
    assert operations(cluster, parent, "deploy")[0]["status"] == "aborting"
    settled(cluster, parent, "deploy")
    states = assert_consistent(cluster, [parent.model_id])
    assert all(len(state.on_disk) == 2 if party == DEAD else len(state.on_disk) == 1 for party, state in states.items())


def test_a_migrate_with_a_dead_party_answers_at_once(cluster: Cluster, parent: GeneratedModel, tmp_path: Path) -> None:
    conf = tmp_path / "migrate.json"
    new_roles = {"guest": [99], "host": [100], "arbiter": [100]}
    conf.write_text(
        json.dumps(
            {
                "role": ROLES,
                "execute_party": {"guest": [9999], "host": [10000]},
                "migrate_initiator": {"role": "guest", "party_id": 99},
                "migrate_role": new_roles,
                "model_id": parent.model_id,
                "model_version": parent.version,
            }
        ),
        encoding="utf-8",
    )
    cluster.kill(agent_name(DEAD))
    took, answer = timed_flow(cluster, "model", "migrate", "-c", str(conf))
    assert took <= ANSWER_WITHIN, (took, answer)
    assert_dead_party_answer(answer, {"guest": [9999], "host": [10000]})
    settled(cluster, parent, "migrate")
    assert not list((cluster.data_dir / "parties" / "9999" / "migrated").glob("*.zip"))
    assert_consistent(cluster, [parent.model_id])


def test_a_load_with_a_dead_party_answers_at_once_and_unloads_the_others(
    cluster: Cluster, parent: GeneratedModel, servings: dict[str, ServingTestServer], tmp_path: Path
) -> None:
    code, deployed = flow(cluster, "model", "deploy", "--model-id", parent.model_id, "--model-version", parent.version)
    assert code == 0, deployed
    child = deployed["data"]["model_version"]
    conf = tmp_path / "load.json"
    conf.write_text(
        json.dumps(
            {
                "initiator": {"party_id": "9999", "role": "guest"},
                "role": {r: [str(p) for p in ids] for r, ids in ROLES.items()},
                "job_parameters": {"model_id": parent.model_id, "model_version": child},
            }
        ),
        encoding="utf-8",
    )
    cluster.kill(agent_name(DEAD))
    took, answer = timed_flow(cluster, "model", "load", "-c", str(conf))
    assert took <= ANSWER_WITHIN, (took, answer)
    assert_dead_party_answer(answer, {"guest": [9999], "host": [10000]})
    guest = servings["9999"]
    assert len(guest.records("publishLoad")) == 1
    assert [r["request"]["tableName"] for r in guest.records("unload")] == [child]  # rolled back
    assert "rolled back: party 10000 failed" in answer["data"]["detail"]["guest"]["9999"]["retmsg"], answer
    assert not servings[DEAD].records("publishLoad")


@contextlib.contextmanager
def silent_address() -> Iterator[str]:
    """A loopback address whose connection attempts get no answer, like a host that is down behind a firewall:
    a listening socket whose accept queue is full, so the kernel drops every further SYN."""
    with contextlib.ExitStack() as stack:
        listener = stack.enter_context(socket.socket())
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        for _ in range(4):  # more than the queue holds: it is full whatever the kernel rounds a backlog of 0 to
            filler = stack.enter_context(socket.socket())
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(address)
        yield f"{address[0]}:{address[1]}"


def test_a_party_whose_connection_hangs_fails_within_call_timeout(tmp_path: Path) -> None:
    """Its connection attempts are bounded by the short ``call_timeout`` (4 s here), not the deploy's 600 s."""
    call_timeout = 4.0
    conf = {"call_timeout": call_timeout, "maintenance_period": 1}
    with Cluster.start(tmp_path / "cluster", {"9999": {}, DEAD: {}}, conf) as cluster, silent_address() as silent:
        parent = import_everywhere(cluster, generate_model(tmp_path / "model", roles=ROLES))
        cluster.route(DEAD, silent)
        cluster.restart(COORDINATOR)
        took, answer = timed_flow(
            cluster, "model", "deploy", "--model-id", parent.model_id, "--model-version", parent.version
        )
        assert took <= 2 * call_timeout + 2, (took, answer)  # the prepare, and the one try of its abort
        assert_dead_party_answer(answer, ROLES)
        cluster.route(DEAD, None)
        cluster.restart(COORDINATOR)  # reaches the party again: the abort is delivered
        wait_until(lambda: operations(cluster, parent, "deploy")[0]["status"] == "failed", 30, "the abort")
        assert_consistent(cluster, [parent.model_id])


def test_a_party_behind_a_proxy_whose_router_is_down_fails_at_once(tmp_path: Path) -> None:
    """Party 10000 is reached through FATE's proxy (the rollsite test router), which is stopped by its PID."""
    with RollsiteProcess.start(tmp_path / "rollsite") as rollsite:
        parties = {"9999": {}, DEAD: {"proxy": rollsite.address}}
        with Cluster.start(tmp_path / "cluster", parties, {"party_id": "9999"}) as cluster:
            rollsite.set_route(DEAD, AGENT_ROLE, cluster.agent_address(DEAD))
            parent = import_everywhere(cluster, generate_model(tmp_path / "model", roles=ROLES))
            rollsite.stop()
            took, answer = timed_flow(
                cluster, "model", "deploy", "--model-id", parent.model_id, "--model-version", parent.version
            )
            assert took <= ANSWER_WITHIN, (took, answer)
            assert_dead_party_answer(answer, ROLES)
            assert f"through the proxy at {rollsite.address}" in answer["data"]["detail"]["host"][DEAD]["retmsg"]
            assert_consistent(cluster, [parent.model_id])


def test_single_party_and_serving_calls_to_a_dead_party_answer_at_once(
    cluster: Cluster, parent: GeneratedModel, tmp_path: Path
) -> None:
    """Unload (every serving party), delete and export of the dead party's slice: 105 naming it, in seconds."""
    model = ["--model-id", parent.model_id, "--model-version", parent.version]
    export_conf = tmp_path / "export.json"
    export_conf.write_text(
        json.dumps(
            {
                **dict(zip(["model_id", "model_version"], model[1::2], strict=True)),
                "role": "host",
                "party_id": int(DEAD),
                "output_path": str(tmp_path / "out"),
            }
        ),
        encoding="utf-8",
    )
    cluster.kill(agent_name(DEAD))
    for args in (
        ["model", "unload", *model],
        ["model", "delete", *model, "-r", "host", "-p", DEAD],
        ["model", "export", "-c", str(export_conf)],
    ):
        begun = time.monotonic()
        code, answer = flow(cluster, *args)
        took = time.monotonic() - begun
        print(f"flow {' '.join(args[:2])}: answered {answer['retcode']} in {took:.2f} s")
        assert code != 0 and took <= ANSWER_WITHIN, (args, took, answer)
        assert CONNECTION_ERROR in (answer["retcode"], answer.get("data", {}).get("host", {}).get(DEAD)), answer
        assert f"{DEAD}" in json.dumps(answer), answer
    assert assert_consistent(cluster, [parent.model_id])["9999"].on_disk  # the guest's slice untouched
