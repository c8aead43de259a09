"""The operation log in the catalog.

Who did what to which version, each party's result, and what a two-phase operation needs to be finished or undone after
a stop (its plan, its owner replica).

:class:`OperationRecords` is the catalog's part that keeps it (:class:`registry_server.catalog.Catalog`
is made of it and the party models).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import peewee
from google.protobuf.timestamp_pb2 import Timestamp

from fate_registry import metrics
from fate_registry.db import now_ms
from fate_registry.errors import Reason, RegistryError, Retcode
from fate_registry.v1.common_pb2 import PartyResult
from fate_registry.v1.registry_pb2 import Operation
from registry_server import paging
from registry_server.op_state import OpState
from registry_server.plan import result_json


@dataclass(frozen=True)
class Unfinished:
    """An operation a replica may have to finish or undo: its plan is empty for single-phase ones."""

    operation_id: str
    status: str
    plan: dict[str, Any]
    owner: str


@dataclass(frozen=True)
class OpenTransfer:
    """A one-hop transfer still running in the log.

    Its ticket, its operation (its party first in its results) and its entry as an unfinished operation, to claim it
    (:meth:`Catalog.claim`).
    """

    ticket: str
    operation: Operation
    unfinished: Unfinished


def timestamp(ms: int) -> Timestamp:
    """A protobuf Timestamp of ``ms`` milliseconds since the epoch."""
    ts = Timestamp()
    ts.FromMilliseconds(ms)
    return ts


def operation_table(base: Any) -> Any:
    """The operation log's table, on the database of ``base`` (a peewee model base)."""

    class OperationRow(base):  # type: ignore[misc]
        operation_id = peewee.CharField(max_length=64, primary_key=True)
        operation = peewee.CharField(max_length=50)
        status = peewee.CharField(max_length=20, index=True)
        caller = peewee.CharField(max_length=255, default="")
        model_id = peewee.CharField(max_length=255, default="")
        model_version = peewee.CharField(max_length=255, default="")
        start_time = peewee.BigIntegerField(index=True)
        end_time = peewee.BigIntegerField(default=0)
        results_json = peewee.TextField(default="[]")
        retcode = peewee.IntegerField(default=0)
        retmsg = peewee.TextField(default="")
        # A one-hop transfer's ticket, while the agent's report of it is awaited.
        ticket = peewee.CharField(max_length=128, default="", index=True)
        # What a two-phase operation needs to be finished or rolled back after a restart.
        plan_json = peewee.TextField(default="")
        # The coordinator replica that runs the operation, or took it over.
        owner = peewee.CharField(max_length=255, default="")

        class Meta:
            table_name = "t_registry_operation"
            indexes = (
                (("model_id", "model_version", "start_time", "operation_id"), False),
                (("model_id", "start_time", "operation_id"), False),
                (("operation", "start_time", "operation_id"), False),
            )

    return OperationRow


class OperationRecords:
    """The catalog's operation log; ``owner`` names the coordinator replica it writes operations for."""

    db: peewee.Database
    owner: str
    _operation: Any  # the table: a peewee model class

    def start_operation(
        self,
        operation: str,
        caller: str,
        model_id: str,
        model_version: str,
        operation_id: str = "",
        pending: Sequence[PartyResult] = (),
    ) -> str:
        operation_id = operation_id or uuid.uuid4().hex
        with self.db.connection_context():
            self._operation.insert(
                operation_id=operation_id,
                operation=operation,
                status=OpState.RUNNING,
                caller=caller[:255],
                model_id=model_id[:255],
                model_version=model_version[:255],
                start_time=now_ms(),
                results_json=_results_json(pending),
                owner=self.owner,
            ).execute()
        return operation_id

    def operation(self, operation_id: str) -> tuple[Operation, dict[str, Any]] | None:
        """One logged operation and its plan (empty for a single-phase one), if it exists."""
        op = self._operation
        with self.db.connection_context():
            row = op.get_or_none(op.operation_id == operation_id)
        return None if row is None else (_operation_entity(row), json.loads(row.plan_json or "{}"))

    def set_plan(self, operation_id: str, status: str, plan: dict[str, Any]) -> None:
        """Persist a two-phase operation's state before acting on it.

        Only its owner may (a replica whose operation was taken over while it stalled learns so here, before it decides
        anything).
        """
        op = self._operation
        with self.db.connection_context():
            changed = (
                op.update(status=status, plan_json=json.dumps(plan))
                .where((op.operation_id == operation_id) & (op.owner == self.owner))
                .execute()
            )
        if not changed:
            raise RegistryError(
                Reason.CANCELLED,
                f"operation {operation_id} was taken over by another coordinator replica; it finishes it",
            )

    def unfinished(self, statuses: Sequence[str], live: peewee.SelectQuery) -> list[Unfinished]:
        """The operations in ``statuses`` this replica owns or whose owner is not ``live``, except one-hop transfers.

        ``live`` is a subquery of replica ids; the transfer sweep settles one-hop transfers.
        """
        op = self._operation
        with self.db.connection_context():
            rows = list(
                op.select(op.operation_id, op.status, op.plan_json, op.owner).where(
                    op.status.in_(list(statuses))
                    & (op.ticket == "")
                    & ((op.owner == self.owner) | op.owner.not_in(live))
                )
            )
        return [Unfinished(r.operation_id, r.status, json.loads(r.plan_json or "{}"), r.owner) for r in rows]

    def claim(self, operation: Unfinished) -> bool:
        """Take an operation over from its (expired) owner; False if another replica was first."""
        if operation.owner == self.owner:
            return True
        op = self._operation
        with self.db.connection_context():
            return bool(
                op.update(owner=self.owner)
                .where((op.operation_id == operation.operation_id) & (op.owner == operation.owner))
                .execute()
            )

    def interrupt(self, operation_id: str, message: str, in_doubt: Sequence[str] = ()) -> None:
        """Close the log entry of a single-phase operation whose replica stopped while it ran.

        Kinds in ``in_doubt`` whose party may have done the work (relayed calls, no ticket) become "in_doubt" instead:
        the party is asked later (:meth:`in_doubt`).
        """
        op = self._operation
        mine = (op.operation_id == operation_id) & (op.status == OpState.RUNNING) & (op.owner == self.owner)
        with self.db.connection_context():
            if in_doubt:
                doubted = (
                    op.update(status=OpState.IN_DOUBT)
                    .where(mine & op.operation.in_(list(in_doubt)) & (op.ticket == ""))
                    .execute()
                )
                if doubted:
                    return
            row = op.get_or_none(mine)
            if row is None:
                return
            # a party still marked running gets the operation's end, so the log holds no result in flight
            results = [
                PartyResult(
                    role=r.role,
                    party_id=r.party_id,
                    retcode=Retcode.OPERATING_ERROR,
                    retmsg=message,
                    reason=Reason.CANCELLED.name,
                )
                if r.retcode == Retcode.RUNNING
                else r
                for r in _results_of(row)
            ]
            end = now_ms()
            closed = (
                op.update(
                    status=OpState.INTERRUPTED,
                    end_time=end,
                    retcode=Retcode.OPERATING_ERROR,
                    retmsg=message,
                    results_json=_results_json(results),
                )
                .where(mine)
                .execute()
            )
        if closed:
            metrics.observe_operation(row.operation, OpState.INTERRUPTED, max(0, end - row.start_time) / 1000)

    def in_doubt(self) -> list[Operation]:
        """Operations in doubt: their party's answer was lost."""
        op = self._operation
        with self.db.connection_context():
            rows = list(op.select().where(op.status == OpState.IN_DOUBT))
        return [_operation_entity(r) for r in rows]

    def set_results(self, operation_id: str, results: Sequence[PartyResult], retcode: int, retmsg: str) -> None:
        """Record the parties' results of an operation that is not finished yet."""
        op = self._operation
        with self.db.connection_context():
            op.update(results_json=_results_json(results), retcode=retcode, retmsg=retmsg).where(
                op.operation_id == operation_id
            ).execute()

    def set_ticket(self, operation_id: str, ticket: str) -> None:
        op = self._operation
        with self.db.connection_context():
            op.update(ticket=ticket).where(op.operation_id == operation_id).execute()

    def open_transfer(self, ticket: str) -> Operation | None:
        """The running operation a one-hop transfer ticket belongs to."""
        op = self._operation
        with self.db.connection_context():
            row = op.get_or_none((op.ticket == ticket) & (op.status == OpState.RUNNING))
        return None if row is None else _operation_entity(row)

    def stale_transfers(self, started_before_ms: int) -> list[tuple[str, Operation]]:
        """Running one-hop transfers started before the given time: (ticket, operation)."""
        op = self._operation
        with self.db.connection_context():
            rows = list(
                op.select().where(
                    (op.ticket != "") & (op.status == OpState.RUNNING) & (op.start_time < started_before_ms)
                )
            )
        return [(r.ticket, _operation_entity(r)) for r in rows]

    def open_transfers(self, live: peewee.SelectQuery) -> list[OpenTransfer]:
        """Running one-hop transfers of this replica, or of a replica not among ``live`` (a subquery of replica ids)."""
        op = self._operation
        with self.db.connection_context():
            rows = list(
                op.select()
                .where(
                    (op.ticket != "")
                    & (op.status == OpState.RUNNING)
                    & ((op.owner == self.owner) | op.owner.not_in(live))
                )
                .order_by(op.start_time)
            )
        return [
            OpenTransfer(r.ticket, _operation_entity(r), Unfinished(r.operation_id, r.status, {}, r.owner))
            for r in rows
        ]

    def unsettled(self, kinds: Sequence[str], model_id: str, model_version: str) -> list[Operation]:
        """Operations of ``kinds`` in doubt, and running one-hop transfers of those kinds of this replica.

        An empty ``model_id`` or ``model_version`` matches any.
        """
        op = self._operation
        one_hop = (op.status == OpState.RUNNING) & (op.ticket != "") & (op.owner == self.owner)
        query = op.select().where(((op.status == OpState.IN_DOUBT) | one_hop) & op.operation.in_(list(kinds)))
        for column, value in ((op.model_id, model_id), (op.model_version, model_version)):
            if value:
                query = query.where(column == value)
        with self.db.connection_context():
            rows = list(query)
        return [_operation_entity(r) for r in rows]

    def finish_operation(
        self, operation_id: str, status: OpState, results: Sequence[PartyResult], retcode: int, retmsg: str
    ) -> None:
        """Close an operation's log entry; its kind and duration go to the metrics (the two columns read)."""
        op = self._operation
        end = now_ms()
        with self.db.connection_context():
            op.update(
                status=status,
                end_time=end,
                results_json=_results_json(results),
                retcode=retcode,
                retmsg=retmsg,
                ticket="",
            ).where(op.operation_id == operation_id).execute()
            row = op.select(op.operation, op.start_time).where(op.operation_id == operation_id).first()
        if row is not None:
            metrics.observe_operation(row.operation, status, max(0, end - row.start_time) / 1000)

    def list_operations(
        self, model_id: str, model_version: str, operation: str, page_size: int, page_token: str
    ) -> tuple[list[Operation], str]:
        """Newest first; the page token is the (start_time, operation_id) of the last row returned."""
        op = self._operation
        query = op.select()
        for column, value in ((op.model_id, model_id), (op.model_version, model_version), (op.operation, operation)):
            if value:
                query = query.where(column == value)
        if page_token:
            start, last_id = paging.decode_token(page_token)
            query = query.where((op.start_time < start) | ((op.start_time == start) & (op.operation_id < last_id)))
        size = paging.page_size(page_size)
        with self.db.connection_context():
            rows = list(query.order_by(op.start_time.desc(), op.operation_id.desc()).limit(size + 1))
        more = len(rows) > size
        rows = rows[:size]
        token = paging.encode_token(rows[-1].start_time, rows[-1].operation_id) if more else ""
        return [_operation_entity(r) for r in rows], token


def _results_json(results: Sequence[PartyResult]) -> str:
    return json.dumps([result_json(r) for r in results])


def _results_of(row: Any) -> list[PartyResult]:
    return [PartyResult(**r) for r in json.loads(row.results_json)]


def _operation_entity(row: Any) -> Operation:
    return Operation(
        operation_id=row.operation_id,
        operation=row.operation,
        status=row.status,
        caller=row.caller,
        model_id=row.model_id,
        model_version=row.model_version,
        start_time=timestamp(row.start_time),
        end_time=timestamp(row.end_time) if row.end_time else None,
        results=_results_of(row),
        retcode=row.retcode,
        retmsg=row.retmsg,
    )
