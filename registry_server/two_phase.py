"""The coordinator's two-phase engine: all or nothing across parties (DESIGN §5.1).

A state machine over the operation log, one operation at a time::

    (logged)   --plan-->   PREPARING  --every party prepared-->  COMMITTING --every party confirmed--> SUCCESS
                               |                                     (commit resent until confirmed)
                               +--a party did not prepare--> ABORTING --every party confirmed--> FAILED
                               +--the coordinator stopped--> ABORTING --every party confirmed--> ROLLED_BACK
                                                              (abort resent until confirmed)

Each state is written to the log, with the plan, before it is acted on: a coordinator that stops
anywhere finds in the log what to do (:meth:`TwoPhase.recover`, at its start and from the
maintenance loop). A kind of operation (deploy, migrate) only builds its plan and its per-party
prepare requests (:class:`PrepareStep`), and says how the committed version is catalogued
(:data:`Finish`).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic

import peewee

from fate_registry import faultpoints
from fate_registry.agent.v1 import agent_pb2
from fate_registry.config import CoordinatorConf
from fate_registry.errors import Reason, RegistryError, Retcode
from fate_registry.v1.common_pb2 import PartyResult
from registry_server.agent_rpc import AgentRpc, Req, Resp, Rpc
from registry_server.agents import AgentCaller
from registry_server.catalog import Catalog
from registry_server.deletes import DELETE
from registry_server.fanout import REACH_SECONDS, FanOut, PartyCall
from registry_server.op_state import UNFINISHED, OpState
from registry_server.oplog import failed_result, rolled_back_result
from registry_server.plan import Plan, PlanKind, Prepared
from registry_server.transport import UNREACHABLE_KEY

log = logging.getLogger(__name__)
IN_DOUBT = ("import", "restore", DELETE)  # they write (or forget) in the catalog after the party's answer
# Added to the result of a party the abort could not be sent to, while it is not confirmed.
ABORT_NOT_CONFIRMED = "; the abort is not confirmed yet: the coordinator resends it until it is"


@dataclass(frozen=True)
class Deadlines:
    """The deadlines of the calls of a two-phase operation, in seconds."""

    call_timeout: float
    """Each party's deadline of a short call (a decision gets at most this)."""
    prepare_timeout: float
    """Each party's deadline to prepare (the deploy deadline: a prepare copies a model)."""

    @classmethod
    def of(cls, conf: CoordinatorConf) -> Deadlines:
        return cls(call_timeout=conf.call_timeout, prepare_timeout=conf.deploy_timeout)


@dataclass(frozen=True)
class Services:
    """What the engine and the kinds of operation use: the catalog, the agents, the fan-out, the deadlines."""

    catalog: Catalog
    agents: AgentCaller
    fanout: FanOut
    deadlines: Deadlines


@dataclass(frozen=True)
class PrepareStep(Generic[Req, Resp]):
    """A kind's prepare: the RPC, each party's request, and what the party's answer says it prepared."""

    rpc: Rpc[Req, Resp]
    request: Callable[[str, str], Req]
    """(role, party_id) -> the party's request."""
    prepared: Callable[[Resp], Prepared]


Finish = Callable[[Services, str, Plan], list[PartyResult]]
"""A kind's last step of a commit confirmed everywhere: catalog the new version (operation id, plan)
and answer each party's result."""


class TwoPhase:
    """Carries out a two-phase operation from its logged plan, and recovers those a stop left open."""

    def __init__(self, services: Services, finishers: Mapping[PlanKind, Finish]) -> None:
        self.services = services
        self.catalog = services.catalog
        self._finishers = dict(finishers)
        # The operations a request of this process is carrying out: recovery leaves them alone.
        self._active: set[str] = set()
        self._active_lock = threading.Lock()

    # -- a request's run: log, prepare, decide ---------------------------------------------------------

    def run(self, caller: str, plan: Plan, step: PrepareStep[Req, Resp], operation_id: str = "") -> list[PartyResult]:
        """Prepare on every party at once; commit everywhere if all prepared, else abort everywhere.

        The plan, and then the decision, are written to the operation log before they are acted on.
        A commit some party did not confirm yet raises PARTY_UNAVAILABLE (it is resent until confirmed).
        """
        operation_id = operation_id or uuid.uuid4().hex
        with self._carrying(operation_id):
            pending = [
                PartyResult(role=r, party_id=p, retcode=Retcode.RUNNING, retmsg="running") for r, p in plan.parties
            ]
            self.catalog.start_operation(
                plan.kind.value, caller, plan.model_id, plan.model_version, operation_id=operation_id, pending=pending
            )
            self._log(operation_id, OpState.PREPARING, plan)
            faultpoints.reached("coordinator.two_phase.preparing")
            answers = self._prepare(operation_id, plan, step)
            if any(isinstance(a, RegistryError) for a in answers):
                return self._abort(operation_id, plan, answers)
            plan.prepared = {key: a for key, a in zip(plan.parties, answers, strict=True) if isinstance(a, Prepared)}
            return self._commit(operation_id, plan)

    def _prepare(self, operation_id: str, plan: Plan, step: PrepareStep[Req, Resp]) -> list[Prepared | RegistryError]:
        def call(role: str, party: str) -> Callable[[float], Prepared]:
            request = step.request(role, party)
            return lambda timeout: step.prepared(
                self.services.agents.call(party, step.rpc, request, operation_id, timeout)
            )

        calls = [PartyCall(r, p, call(r, p), REACH_SECONDS) for r, p in plan.parties]
        return self.services.fanout.parties(calls, self.services.deadlines.prepare_timeout)

    @contextlib.contextmanager
    def _carrying(self, operation_id: str) -> Iterator[None]:
        """Mark an operation as carried out by a request of this process, for recovery to leave alone."""
        with self._active_lock:
            self._active.add(operation_id)
        try:
            yield
        finally:
            with self._active_lock:
                self._active.discard(operation_id)

    def _log(self, operation_id: str, state: OpState, plan: Plan) -> None:
        self.catalog.set_plan(operation_id, state, plan.to_json())

    # -- the decisions ------------------------------------------------------------------------------

    def _send(self, operation_id: str, parties: Sequence[str], commit: bool) -> dict[str, RegistryError | None]:
        """Send the decision (commit or abort) to ``parties`` at once, retrying for a moment while one is unavailable.

        Each party's error, or None once it confirmed.

        A decision is a rename or a removal, not a copy: each party has the short deadline (at most the
        prepare's), so a party that hangs delays the answer by ``call_timeout``, not a second prepare deadline.
        """
        agents = self.services.agents
        commit_request = agent_pb2.CommitOperationRequest(operation_id=operation_id)
        abort_request = agent_pb2.AbortOperationRequest(operation_id=operation_id)

        def make(party: str) -> Callable[[float], None]:
            def send(timeout: float) -> None:
                if commit:
                    agents.call(party, AgentRpc.COMMIT_OPERATION, commit_request, operation_id, timeout)
                else:
                    agents.call(party, AgentRpc.ABORT_OPERATION, abort_request, operation_id, timeout)

            return send

        deadlines = self.services.deadlines
        deadline = min(deadlines.call_timeout, deadlines.prepare_timeout)
        answers = self.services.fanout.parties([PartyCall("", p, make(p), REACH_SECONDS) for p in parties], deadline)
        return dict(zip(parties, answers, strict=True))

    def _commit(self, operation_id: str, plan: Plan) -> list[PartyResult]:
        self._log(operation_id, OpState.COMMITTING, plan)
        faultpoints.reached("coordinator.two_phase.committing")
        errors = {p: e for p, e in self._send(operation_id, plan.party_ids(), commit=True).items() if e is not None}
        if errors:
            why = "; ".join(f"{p}: {e.message}" for p, e in errors.items())
            log.error("%s %s: commit not yet acknowledged (%s); it will be resent", plan.kind, operation_id, why)
            raise RegistryError(
                Reason.PARTY_UNAVAILABLE,
                f"every party prepared the {plan.kind} and it is committed, but {', '.join(errors)} "
                "did not confirm yet; the coordinator resends the commit until it does",
            )
        faultpoints.reached("coordinator.two_phase.committed")
        results = self._finishers[plan.kind](self.services, operation_id, plan)
        self.catalog.finish_operation(operation_id, OpState.SUCCESS, results, Retcode.SUCCESS, "success")
        return results

    def _abort(self, operation_id: str, plan: Plan, answers: Sequence[Prepared | RegistryError]) -> list[PartyResult]:
        """Abort everywhere.

        Each party's outcome is kept in the plan, so that an abort a party did not confirm is resent by the maintenance
        loop (and after a restart) until it is.
        """
        plan.outcome = [
            failed_result(role, party, answer)
            if isinstance(answer, RegistryError)
            else _rolled_back(plan, role, party, "another party failed")
            for (role, party), answer in zip(plan.parties, answers, strict=True)
        ]
        self._log(operation_id, OpState.ABORTING, plan)
        # A party whose prepare could not reach it is sent the abort by the maintenance loop, not while the
        # caller waits: nothing was sent to it, and trying again now would only delay the answer.
        unreachable = frozenset(
            party
            for (_, party), answer in zip(plan.parties, answers, strict=True)
            if isinstance(answer, RegistryError) and UNREACHABLE_KEY in answer.metadata
        )
        return self._finish_abort(operation_id, plan, unreachable)

    def _finish_abort(self, operation_id: str, plan: Plan, deferred: frozenset[str] = frozenset()) -> list[PartyResult]:
        results = [copy.deepcopy(r) for r in plan.outcome or []]
        sent = [p for p in plan.party_ids() if p not in deferred]  # the deferred: the maintenance loop's
        acks = self._send(operation_id, sent, commit=False)
        unconfirmed = [p for p in plan.party_ids() if p in deferred or acks[p] is not None]
        if unconfirmed:
            log.info("%s %s: abort not yet confirmed by %s", plan.kind, operation_id, ", ".join(unconfirmed))
            message = f"failed; the abort is resent until {', '.join(unconfirmed)} confirm"
            for result in results:
                if result.party_id in unconfirmed:
                    result.retmsg += ABORT_NOT_CONFIRMED
            self.catalog.set_results(operation_id, results, Retcode.ARGUMENT_ERROR, message)
            return results  # stays "aborting": the maintenance loop resends it
        if plan.rolled_back:
            state, retcode = OpState.ROLLED_BACK, Retcode.OPERATING_ERROR
            message = "rolled back: the coordinator stopped before every party had prepared"
        else:
            state, retcode, message = OpState.FAILED, Retcode.ARGUMENT_ERROR, "failed"
        self.catalog.finish_operation(operation_id, state, results, retcode, message)
        return results

    # -- recovery -----------------------------------------------------------------------------------

    def recover(self, at_start: bool, live: peewee.SelectQuery) -> None:
        """Finish or undo the unfinished operations of this replica and of replicas not in ``live``.

        Decided operations (committing, aborting) are sent their decision again. One caught preparing
        is rolled back, and a single-phase one caught running is closed as interrupted, when its
        owner is gone: another replica whose lease expired, or this replica's previous run (at start).
        An operation this replica is running right now is left alone.
        """
        for unfinished in self.catalog.unfinished([s.value for s in UNFINISHED], live):
            operation_id, state = unfinished.operation_id, OpState(unfinished.status)
            orphaned = at_start or unfinished.owner != self.catalog.owner
            with self._active_lock:
                active = operation_id in self._active
            if active or (state in (OpState.RUNNING, OpState.PREPARING) and not orphaned):
                continue
            if not self.catalog.claim(unfinished):
                continue  # another replica took it over first
            if unfinished.owner != self.catalog.owner:
                log.info("operation %s: taken over from replica %s", operation_id, unfinished.owner)
            if not unfinished.plan:
                self.catalog.interrupt(
                    operation_id,
                    f"the coordinator replica {unfinished.owner} stopped before the operation finished",
                    in_doubt=IN_DOUBT,
                )
                continue
            plan = Plan.from_json(unfinished.plan)
            try:
                self.resume(operation_id, state, plan)
            except RegistryError as exc:
                log.info("%s %s: recovery deferred: %s", plan.kind, operation_id, exc.message)

    def resume(self, operation_id: str, state: OpState, plan: Plan) -> None:
        """Take a logged two-phase operation on from ``state``.

        A commit is resent; one caught preparing is rolled back everywhere; an abort is resent.
        """
        if state is OpState.COMMITTING:
            self._commit(operation_id, plan)
            log.info("%s %s: commit finished", plan.kind, operation_id)
            return
        if plan.outcome is None:  # caught preparing: every party is rolled back
            why = "the coordinator stopped before every party had prepared"
            plan.outcome = [_rolled_back(plan, role, party, why) for role, party in plan.parties]
            plan.rolled_back = True
            self._log(operation_id, OpState.ABORTING, plan)
        self._finish_abort(operation_id, plan)


def _rolled_back(plan: Plan, role: str, party: str, why: str) -> PartyResult:
    return rolled_back_result(role, party, f"{plan.kind} on role {role} {party} rolled back: {why}")
