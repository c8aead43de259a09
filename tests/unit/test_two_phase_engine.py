"""The coordinator's two-phase engine on a real SQLite catalog, against in-memory fake agents.

One test per point where the coordinator may stop (each recovered at the restart of its replica and
by another replica's maintenance loop), one per combination of the parties' answers, and the plans
the operation log holds read back. The fault suite (tests/faults) does the same with real processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fate_registry import faultpoints
from fate_registry.agent.v1 import agent_pb2
from fate_registry.config import DatabaseConf
from fate_registry.errors import Reason, RegistryError, Retcode
from fate_registry.v1.common_pb2 import PartyModelRef, PartyResult, RoleParties
from registry_server.agent_rpc import AgentRpc, Req, Resp, Rpc
from registry_server.catalog import Catalog, ModelFilter
from registry_server.fanout import FanOut
from registry_server.multiparty import FINISHERS
from registry_server.op_state import OpState
from registry_server.plan import Plan, PlanKind, Prepared
from registry_server.replicas import Leases
from registry_server.two_phase import ABORT_NOT_CONFIRMED, Deadlines, PrepareStep, Services, TwoPhase
from tests.support.cluster import wait_until
from tests.unit.fake_agents import Crash, FakeAgents, Fault

PARTIES = [("arbiter", "10001"), ("host", "10000"), ("guest", "9999")]
ROLES = {role: [party] for role, party in PARTIES}
NEW_PARTY = {"10001": "101", "10000": "100", "9999": "99"}
MODEL_ID = "arbiter-10001#guest-9999#host-10000#model"
PARENT = "202612070000000000000"
CHILD = "202612070000000000001"
OPERATION = "op1"
FEDERATED_ERROR = 104
ROLLED_BACK_AT_RESTART = "rolled back: the coordinator stopped before every party had prepared"


@dataclass
class Federation:
    """The catalog, the fake agents, and the coordinator runs (replicas, restarts) on them."""

    conf: DatabaseConf
    agents: FakeAgents = field(default_factory=FakeAgents)
    _opened: list[tuple[Catalog, FanOut]] = field(default_factory=list)

    def coordinator(self, replica: str = "a") -> TwoPhase:
        """A run of replica ``replica``: a fresh catalog connection and fan-out over the same state."""
        catalog, fanout = Catalog(self.conf, owner=replica), FanOut()
        self._opened.append((catalog, fanout))
        return TwoPhase(Services(catalog, self.agents, fanout, Deadlines(2.0, 2.0)), FINISHERS)

    def live(self, engine: TwoPhase) -> Leases:
        leases = Leases(engine.catalog.db, engine.catalog.owner, 60)
        leases.renew()
        return leases

    def recover(self, engine: TwoPhase, at_start: bool) -> None:
        engine.recover(at_start=at_start, live=self.live(engine).live())

    def close(self) -> None:
        for catalog, fanout in self._opened:
            fanout.close()
            catalog.close()

    @property
    def catalog(self) -> Catalog:
        """The catalog as the first coordinator run opened it (every run shares its database)."""
        return self._opened[0][0]

    def state(self, operation_id: str = OPERATION) -> tuple[OpState, list[PartyResult]]:
        found = self.catalog.operation(operation_id)
        assert found is not None
        return OpState(found[0].status), list(found[0].results)

    def committed_everywhere(self, model_id: str = MODEL_ID, version: str = CHILD) -> bool:
        parties = [self.agents.party(p) for _, p in PARTIES]
        return all((model_id, version) in p.published and not p.prepared for p in parties)

    def left_nothing(self) -> bool:
        parties = [self.agents.party(p) for _, p in PARTIES]
        return all(not p.published and not p.prepared and OPERATION in p.aborted for p in parties)

    def sent(self, rpc: Rpc[Req, Resp], party_id: str) -> int:
        return self.agents.calls[(rpc.name, party_id)]


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[Federation]:
    federation = Federation(DatabaseConf(engine="sqlite", path=tmp_path / "registry.db"))
    yield federation
    federation.close()


def deploy_plan() -> Plan:
    return Plan(
        kind=PlanKind.DEPLOY,
        model_id=MODEL_ID,
        model_version=PARENT,
        child=CHILD,
        parties=list(PARTIES),
        roles=ROLES,
        parent_info={"parent_model_id": MODEL_ID, "parent_model_version": PARENT},
    )


DEPLOY = PrepareStep(
    AgentRpc.PREPARE_DEPLOY,
    lambda role, party: agent_pb2.PrepareDeployRequest(
        model=PartyModelRef(role=role, party_id=party, model_id=MODEL_ID, model_version=PARENT),
        child_model_version=CHILD,
    ),
    lambda answer: Prepared(digest=answer.manifest_digest),
)


def deploy(engine: TwoPhase) -> list[PartyResult]:
    return engine.run("test", deploy_plan(), DEPLOY, OPERATION)


def catalogued_digests(federation: Federation) -> dict[str, str]:
    rows = federation.catalog.find(ModelFilter(MODEL_ID, CHILD))
    return {row.party_id: row.manifest_digest for row in rows}


EVERY_DIGEST = {party: f"digest-of-{party}" for _, party in PARTIES}

# -- crash points ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CrashPoint:
    point: str = ""
    """A fault point of the engine where the coordinator stops."""
    faults: tuple[tuple[Rpc[Any, Any], str, Fault], ...] = ()
    """Faults of the parties; a CRASH stops the coordinator as it sends that call."""
    outcome: OpState = OpState.SUCCESS


CRASH_POINTS = {
    "plan logged, no prepare sent": CrashPoint(point="coordinator.two_phase.preparing", outcome=OpState.ROLLED_BACK),
    "some parties prepared": CrashPoint(
        faults=((AgentRpc.PREPARE_DEPLOY, "10000", Fault.CRASH),), outcome=OpState.ROLLED_BACK
    ),
    "commit logged, none sent": CrashPoint(point="coordinator.two_phase.committing"),
    "some parties committed": CrashPoint(faults=((AgentRpc.COMMIT_OPERATION, "10000", Fault.CRASH),)),
    "commit confirmed, catalog not written": CrashPoint(point="coordinator.two_phase.committed"),
    "abort logged, some parties aborted": CrashPoint(
        faults=((AgentRpc.PREPARE_DEPLOY, "9999", Fault.REFUSE), (AgentRpc.ABORT_OPERATION, "10000", Fault.CRASH)),
        outcome=OpState.FAILED,
    ),
}


def crash(federation: Federation, monkeypatch: pytest.MonkeyPatch, crash_point: CrashPoint) -> None:
    """Run a deploy on replica a until it stops at ``crash_point``; the calls already on their way arrive."""

    def reached(point: str) -> None:
        if point == crash_point.point:
            raise Crash(point)

    monkeypatch.setattr(faultpoints, "reached", reached)
    for rpc, party, fault in crash_point.faults:
        federation.agents.fail(rpc, party, fault)
    with pytest.raises(Crash):
        deploy(federation.coordinator("a"))
    monkeypatch.setattr(faultpoints, "reached", lambda point: None)
    crashed_on = [rpc for rpc, _, fault in crash_point.faults if fault is Fault.CRASH]
    # the other parties' calls of that step were sent at the same time: they arrive
    wait_until(
        lambda: all(federation.sent(rpc, p) for rpc in crashed_on for _, p in PARTIES), 5, "every call sent arrived"
    )


def assert_outcome(federation: Federation, outcome: OpState) -> None:
    state, results = federation.state()
    assert state is outcome
    if outcome is OpState.SUCCESS:
        assert federation.committed_everywhere()
        assert catalogued_digests(federation) == EVERY_DIGEST
        assert [r.retcode for r in results] == [0, 0, 0]
        return
    assert federation.left_nothing()
    assert catalogued_digests(federation) == {}
    if outcome is OpState.ROLLED_BACK:
        assert [(r.retcode, r.reason) for r in results] == [(FEDERATED_ERROR, "ABORTED")] * 3
        assert all(ROLLED_BACK_AT_RESTART in r.retmsg for r in results)
    else:  # the refusal of 9999 is its answer; the others were rolled back because of it
        assert [(r.party_id, r.reason) for r in results] == [
            ("10001", "ABORTED"),
            ("10000", "ABORTED"),
            ("9999", Reason.INVALID_ARGUMENT.name),
        ]
        assert not any(ABORT_NOT_CONFIRMED in r.retmsg for r in results)


@pytest.mark.parametrize("name", CRASH_POINTS)
def test_a_coordinator_stopped_at_any_point_is_recovered_at_its_restart(
    federation: Federation, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    crash(federation, monkeypatch, CRASH_POINTS[name])
    assert not federation.state()[0].final
    federation.recover(federation.coordinator("a"), at_start=True)
    assert_outcome(federation, CRASH_POINTS[name].outcome)


@pytest.mark.parametrize("name", CRASH_POINTS)
def test_a_replica_stopped_at_any_point_is_recovered_by_another_replicas_maintenance(
    federation: Federation, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    crash(federation, monkeypatch, CRASH_POINTS[name])  # replica a never renewed a lease: it is gone
    federation.recover(federation.coordinator("b"), at_start=False)
    assert_outcome(federation, CRASH_POINTS[name].outcome)


def test_the_maintenance_of_a_live_replica_leaves_its_preparing_operation_to_it(
    federation: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    crash(federation, monkeypatch, CRASH_POINTS["plan logged, no prepare sent"])
    running = federation.coordinator("a")
    federation.recover(running, at_start=False)  # its own, and it may still be preparing it
    assert federation.state()[0] is OpState.PREPARING
    federation.recover(running, at_start=True)
    assert_outcome(federation, OpState.ROLLED_BACK)


# -- answer combinations --------------------------------------------------------------------------------


def test_every_party_prepared_commits_everywhere_and_catalogs_each_partys_account(federation: Federation) -> None:
    results = deploy(federation.coordinator())
    assert [r.retmsg for r in results] == [f"deploy model of role {r} {p} success" for r, p in PARTIES]
    assert_outcome(federation, OpState.SUCCESS)


@pytest.mark.parametrize("fault", [Fault.REFUSE, Fault.ANSWER_LOST])
def test_one_party_that_did_not_prepare_aborts_everywhere(federation: Federation, fault: Fault) -> None:
    """A party that says no, or whose answer was lost (it may have prepared): every party is sent the abort."""
    federation.agents.fail(AgentRpc.PREPARE_DEPLOY, "10000", fault)
    results = deploy(federation.coordinator())
    expected = Reason.INVALID_ARGUMENT if fault is Fault.REFUSE else Reason.DEADLINE_EXCEEDED
    assert [r.reason for r in results] == ["ABORTED", expected.name, "ABORTED"]
    assert all("rolled back: another party failed" in r.retmsg for r in results if r.reason == "ABORTED")
    assert federation.state()[0] is OpState.FAILED
    assert federation.left_nothing()
    assert all(federation.sent(AgentRpc.ABORT_OPERATION, p) == 1 for _, p in PARTIES)


def test_an_unreachable_party_is_sent_its_abort_by_the_maintenance_loop(federation: Federation) -> None:
    federation.agents.fail(AgentRpc.PREPARE_DEPLOY, "10000", Fault.UNREACHABLE)
    engine = federation.coordinator()
    results = deploy(engine)
    assert [ABORT_NOT_CONFIRMED in r.retmsg for r in results] == [False, True, False]
    assert federation.sent(AgentRpc.ABORT_OPERATION, "10000") == 0  # not while the caller waits
    state, logged = federation.state()
    assert state is OpState.ABORTING and [r.retmsg for r in logged] == [r.retmsg for r in results]
    federation.recover(engine, at_start=False)
    assert federation.sent(AgentRpc.ABORT_OPERATION, "10000") == 1
    state, logged = federation.state()
    assert state is OpState.FAILED and not any(ABORT_NOT_CONFIRMED in r.retmsg for r in logged)
    assert logged[1].retcode == RegistryError(Reason.PARTY_UNAVAILABLE, "").fate_retcode
    assert federation.left_nothing()


def test_an_abort_a_party_did_not_confirm_is_resent_until_it_does(federation: Federation) -> None:
    federation.agents.fail(AgentRpc.PREPARE_DEPLOY, "9999", Fault.REFUSE)
    federation.agents.fail(AgentRpc.ABORT_OPERATION, "10001", Fault.UNREACHABLE)
    engine = federation.coordinator()
    results = deploy(engine)
    assert [ABORT_NOT_CONFIRMED in r.retmsg for r in results] == [True, False, False]
    assert federation.state()[0] is OpState.ABORTING
    assert federation.agents.party("10001").prepared  # its prepared version waits for the abort
    federation.recover(engine, at_start=False)
    assert_outcome(federation, OpState.FAILED)


def test_a_commit_a_party_did_not_confirm_is_resent_until_it_does(federation: Federation) -> None:
    federation.agents.fail(AgentRpc.COMMIT_OPERATION, "10000", Fault.UNREACHABLE)
    engine = federation.coordinator()
    with pytest.raises(RegistryError) as raised:
        deploy(engine)
    assert raised.value.reason is Reason.PARTY_UNAVAILABLE and "10000 did not confirm" in raised.value.message
    assert federation.state()[0] is OpState.COMMITTING
    federation.recover(engine, at_start=False)
    assert_outcome(federation, OpState.SUCCESS)


def test_a_committed_party_that_gives_no_account_is_catalogued_from_the_plan(federation: Federation) -> None:
    federation.agents.fail(AgentRpc.GET_MODEL_INFO, "10000", Fault.UNREACHABLE)
    deploy(federation.coordinator())
    assert federation.state()[0] is OpState.SUCCESS
    assert catalogued_digests(federation) == EVERY_DIGEST  # 10000's from what it said it prepared
    (row,) = federation.catalog.find(ModelFilter(MODEL_ID, CHILD, party_id="10000"))
    assert (row.parent, row.job_id, row.roles_json) == (
        False,
        CHILD,
        '{"arbiter": [10001], "host": [10000], "guest": [9999]}',
    )
    assert row.parent_info_json == f'{{"parent_model_id": "{MODEL_ID}", "parent_model_version": "{PARENT}"}}'


def test_a_migrate_catalogs_each_slice_under_its_new_party_with_the_agent_that_holds_it(
    federation: Federation,
) -> None:
    old = {role: RoleParties(party_ids=[party]) for role, party in PARTIES}
    new = {role: RoleParties(party_ids=[NEW_PARTY[party]]) for role, party in PARTIES}
    plan = Plan(PlanKind.MIGRATE, MODEL_ID, PARENT, CHILD, list(PARTIES), new_model_id="new-model")
    step = PrepareStep(
        AgentRpc.PREPARE_MIGRATE,
        lambda role, party: agent_pb2.PrepareMigrateRequest(
            model=PartyModelRef(role=role, party_id=party, model_id=MODEL_ID, model_version=PARENT),
            role=old,
            migrate_role=new,
            new_model_version=CHILD,
        ),
        lambda answer: Prepared(answer.manifest_digest, answer.archive_path, answer.new_model.party_id),
    )
    engine = federation.coordinator()
    results = engine.run("test", plan, step, OPERATION)
    assert all(f"Model files can be found at '/archives/{NEW_PARTY[r.party_id]}.zip'" in r.retmsg for r in results)
    assert federation.committed_everywhere("new-model", CHILD)
    rows = engine.catalog.find(ModelFilter("new-model", CHILD))
    assert sorted(r.party_id for r in rows) == sorted(NEW_PARTY.values())
    assert {new_party: engine.catalog.site_of(new_party) for new_party in NEW_PARTY.values()} == {
        new_party: party for party, new_party in NEW_PARTY.items()
    }


# -- plans in the operation log -------------------------------------------------------------------------

LOGGED_PREPARING = {  # as the coordinator logs a deploy before its prepares
    "kind": "deploy",
    "model_id": MODEL_ID,
    "model_version": PARENT,
    "child": CHILD,
    "roles": ROLES,
    "parties": [list(key) for key in PARTIES],
    "parent_info": {"parent_model_id": MODEL_ID, "parent_model_version": PARENT},
}
LOGGED_COMMITTING = {
    **LOGGED_PREPARING,
    "prepared": {f"{r}#{p}": {"digest": f"digest-of-{p}", "archive": "", "new_party_id": ""} for r, p in PARTIES},
}
LOGGED_ABORTING = {
    **LOGGED_PREPARING,
    "outcome": [
        {
            "role": r,
            "party_id": p,
            "retcode": FEDERATED_ERROR,
            "retmsg": f"deploy on role {r} {p} rolled back",
            "reason": "ABORTED",
        }
        for r, p in PARTIES
    ],
    "rolled_back": True,
}
LOGGED_MIGRATE = {
    "kind": "migrate",
    "model_id": MODEL_ID,
    "model_version": PARENT,
    "new_model_id": "new-model",
    "child": CHILD,
    "parties": [list(key) for key in PARTIES],
    "prepared": {
        f"{r}#{p}": {"digest": "d", "archive": f"/a/{p}.zip", "new_party_id": NEW_PARTY[p]} for r, p in PARTIES
    },
}


@pytest.mark.parametrize(
    "logged", [LOGGED_PREPARING, LOGGED_COMMITTING, LOGGED_ABORTING, LOGGED_MIGRATE], ids=lambda p: str(sorted(p))
)
def test_a_logged_plan_reads_back_to_the_same_json(logged: dict[str, object]) -> None:
    assert Plan.from_json(logged).to_json() == logged


@pytest.mark.parametrize(
    ("state", "plan", "outcome"),
    [
        (OpState.PREPARING, {k: v for k, v in LOGGED_PREPARING.items() if k != "kind"}, OpState.ROLLED_BACK),
        (OpState.COMMITTING, LOGGED_COMMITTING, OpState.SUCCESS),
    ],
    ids=["preparing, logged before plans named their kind", "committing"],
)
def test_an_operation_logged_in_doubt_as_json_is_recovered(
    federation: Federation, state: OpState, plan: dict[str, object], outcome: OpState
) -> None:
    """An operation another coordinator left unfinished, its plan as JSON in the log, is finished or undone."""
    catalog = federation.coordinator().catalog
    for role, party in PARTIES:
        federation.agents.call(party, AgentRpc.PREPARE_DEPLOY, DEPLOY.request(role, party), OPERATION, 1.0)
    pending = [PartyResult(role=r, party_id=p, retcode=Retcode.RUNNING, retmsg="running") for r, p in PARTIES]
    catalog.start_operation("deploy", "test", MODEL_ID, PARENT, operation_id=OPERATION, pending=pending)
    catalog.set_plan(OPERATION, state, plan)
    federation.recover(federation.coordinator(), at_start=True)
    assert_outcome(federation, outcome)
