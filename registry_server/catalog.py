"""The coordinator's federation-wide catalog: party model versions and the operation log.

Rows stay inside; callers get protobuf entities (PartyModelInfo, Operation) or dataclasses.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import peewee
from google.protobuf.timestamp_pb2 import Timestamp
from playhouse.migrate import SchemaMigrator, migrate

from fate_registry import metrics
from fate_registry.config import DatabaseConf
from fate_registry.db import base_model, conflict_target, in_transaction, now_ms, open_database
from fate_registry.errors import Reason, RegistryError, Retcode
from fate_registry.identity import job_ids
from fate_registry.v1.common_pb2 import ImportModelResult, Party, PartyModelInfo, PartyResult
from fate_registry.v1.registry_pb2 import ModelVersion, Operation
from registry_server import paging
from registry_server.tag_store import TagStore


@dataclass(frozen=True)
class Unfinished:
    """An operation a replica may have to finish or undo: its plan is empty for single-phase ones."""

    operation_id: str
    status: str
    plan: dict[str, Any]
    owner: str


@dataclass(frozen=True)
class OpenTransfer:
    """A one-hop transfer still running in the log: its ticket, its operation (its party first in its
    results) and its entry as an unfinished operation, to claim it (:meth:`Catalog.claim`)."""

    ticket: str
    operation: Operation
    unfinished: Unfinished


@dataclass(frozen=True)
class ModelFilter:
    model_id: str = ""
    model_version: str = ""
    role: str = ""
    party_id: str = ""


def _timestamp(ms: int) -> Timestamp:
    ts = Timestamp()
    ts.FromMilliseconds(ms)
    return ts


class Catalog:
    """``owner`` names the coordinator replica this catalog writes operations for (see :mod:`replicas`)."""

    def __init__(self, conf: DatabaseConf, owner: str = "") -> None:
        self.owner = owner
        self.db = open_database(conf, "the catalog database")
        base = base_model(self.db)

        class PartyModel(base):  # type: ignore[misc, valid-type]
            model_id = peewee.CharField(max_length=255, index=True)
            model_version = peewee.CharField(max_length=255, index=True)
            role = peewee.CharField(max_length=50)
            party_id = peewee.CharField(max_length=50)
            manifest_digest = peewee.CharField(max_length=64)
            size_bytes = peewee.BigIntegerField()
            file_count = peewee.IntegerField()
            roles_json = peewee.TextField(default="{}")
            parent = peewee.BooleanField(default=True)
            parent_info_json = peewee.TextField(default="{}")
            loaded_times = peewee.IntegerField(default=0)
            imported = peewee.BooleanField(default=False)
            job_id = peewee.CharField(max_length=64, default="")
            create_time = peewee.BigIntegerField()

            class Meta:
                table_name = "t_registry_party_model"
                indexes = ((("model_id", "model_version", "role", "party_id"), True),)

        class VersionRow(base):  # type: ignore[misc, valid-type]
            """One row per model version some party holds: the version list pages on its indexes
            instead of grouping every party row of the model."""

            model_id = peewee.CharField(max_length=255)
            model_version = peewee.CharField(max_length=255)
            create_time = peewee.BigIntegerField()

            class Meta:
                table_name = "t_registry_model_version"
                indexes = (
                    (("model_id", "model_version"), True),
                    (("model_id", "create_time", "model_version"), False),
                    (("create_time", "model_version"), False),
                )

        class OperationRow(base):  # type: ignore[misc, valid-type]
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

        class HostedParty(base):  # type: ignore[misc, valid-type]
            """A party id that is not one of this federation's, whose migrated slices stay with the agent
            of ``site`` (the party that prepared them): calls for that party go to that agent."""

            party_id = peewee.CharField(max_length=50, primary_key=True)
            site = peewee.CharField(max_length=50)

            class Meta:
                table_name = "t_registry_hosted_party"

        class VersionId(base):  # type: ignore[misc, valid-type]
            """Every version id handed out, so the database, not a clock, makes them unique."""

            version = peewee.CharField(max_length=64, primary_key=True)

            class Meta:
                table_name = "t_registry_version_id"

        self._party_model = PartyModel
        self._find_sqls: dict[tuple[bool, ...], str] = {}
        self._version = VersionRow
        self._operation = OperationRow
        self._version_id = VersionId
        self._hosted = HostedParty
        with self.db.connection_context():
            self.db.create_tables([PartyModel, VersionRow, OperationRow, VersionId, HostedParty])
            self._upgrade()
        self.tags = TagStore(self.db)

    def _upgrade(self) -> None:
        """Bring a catalog written by an earlier release up to date: the owner column, the version rows."""
        op, pm, version = self._operation, self._party_model, self._version
        if "owner" not in {c.name for c in self.db.get_columns(op._meta.table_name)}:
            migrate(SchemaMigrator.from_database(self.db).add_column(op._meta.table_name, "owner", op.owner))
        if not version.select().exists() and pm.select().exists():
            created = peewee.fn.MIN(pm.create_time)
            version.insert_from(
                pm.select(pm.model_id, pm.model_version, created).group_by(pm.model_id, pm.model_version),
                [version.model_id, version.model_version, version.create_time],
            ).execute()

    def close(self) -> None:
        self.db.close()

    # -- party models ---------------------------------------------------------------------------

    def knows(self, model_id: str, model_version: str, role: str, party_id: str) -> bool:
        return bool(self.find(ModelFilter(model_id, model_version, role, party_id)))

    def record_import(self, result: ImportModelResult) -> None:
        self.record(
            PartyModelInfo(
                role=result.model.role,
                party_id=result.model.party_id,
                model_id=result.model.model_id,
                model_version=result.model.model_version,
                manifest_digest=result.manifest_digest,
                size_bytes=result.size_bytes,
                file_count=result.file_count,
                roles_json=result.roles_json or "{}",
                imported=True,
                parent=True,
                job_id=result.job_id,
            )
        )

    def record(self, info: PartyModelInfo) -> None:
        """Insert or replace one party's row of a model version (its load count is kept)."""
        self.record_all([info])

    def site_of(self, party_id: str) -> str | None:
        """The party whose agent holds the migrated slices of ``party_id``, if it is such a party."""
        hosted = self._hosted
        with self.db.connection_context():
            row = hosted.select(hosted.site).where(hosted.party_id == party_id).first()
        return None if row is None else str(row.site)

    def record_all(self, infos: Sequence[PartyModelInfo], sites: Mapping[str, str] | None = None) -> None:
        """Insert or replace several parties' rows in one transaction; ``sites``: the party ids (not of this
        federation) whose slices among them stay with the agent of another party (a migrate's)."""

        if not infos:
            return
        pm = self._party_model
        now = now_ms()
        rows = [
            {
                "model_id": info.model_id,
                "model_version": info.model_version,
                "role": info.role,
                "party_id": info.party_id,
                "manifest_digest": info.manifest_digest,
                "size_bytes": info.size_bytes,
                "file_count": info.file_count,
                "roles_json": info.roles_json or "{}",
                "parent": info.parent,
                "parent_info_json": info.parent_info_json or "{}",
                "imported": info.imported,
                "job_id": info.job_id,
                "create_time": now,
            }
            for info in infos
        ]
        replaced = [getattr(pm, k) for k in rows[0] if k not in ("model_id", "model_version", "role", "party_id")]
        versions = {(info.model_id, info.model_version): None for info in infos}

        def write() -> None:
            # one statement for every party's row (a 32-party deploy used to run 64)
            pm.insert_many(rows).on_conflict(
                conflict_target=conflict_target(self.db, [pm.model_id, pm.model_version, pm.role, pm.party_id]),
                preserve=replaced,
            ).execute()
            self._version.insert_many(
                [{"model_id": m, "model_version": v, "create_time": now} for m, v in versions]
            ).on_conflict_ignore().execute()
            if sites:
                self._hosted.insert_many(
                    [{"party_id": party, "site": site} for party, site in sites.items()]
                ).on_conflict_ignore().execute()

        in_transaction(self.db, write)

    def forget(self, model_id: str, model_version: str, role: str, party_id: str) -> None:
        """Drop one party's row of a version (after the party deleted it)."""
        pm, version = self._party_model, self._version
        same_version = (pm.model_id == model_id) & (pm.model_version == model_version)

        def delete() -> None:
            pm.delete().where(same_version & (pm.role == role) & (pm.party_id == party_id)).execute()
            version.delete().where(
                (version.model_id == model_id)
                & (version.model_version == model_version)
                & ~peewee.fn.EXISTS(pm.select(pm.id).where(same_version))
            ).execute()

        in_transaction(self.db, delete)

    def count_loads(self, model_id: str, model_version: str, parties: Sequence[tuple[str, str]]) -> None:
        """FATE's loaded_times: +1 for each (role, party) that loaded, in one transaction."""
        pm = self._party_model

        def count() -> None:
            for role, party_id in parties:
                pm.update(loaded_times=pm.loaded_times + 1).where(
                    (pm.model_id == model_id)
                    & (pm.model_version == model_version)
                    & (pm.role == role)
                    & (pm.party_id == party_id)
                ).execute()

        in_transaction(self.db, count)

    def new_version_id(self) -> str:
        """A FATE-style job id that no one else got: the database's primary key decides, not a clock."""
        for _ in range(100):
            candidate = job_ids.next()
            try:
                with self.db.connection_context():
                    self._version_id.insert(version=candidate).execute()
                return str(candidate)
            except peewee.IntegrityError:
                continue
        raise RegistryError(Reason.INTERNAL, "could not allocate a unique version id")

    def find(self, where: ModelFilter) -> list[PartyModelInfo]:
        """The party rows matching every non-empty field of ``where``, by role and party.

        The busiest read of the coordinator: its SQL is built by peewee once per combination of
        filled fields and kept, since building it took most of a call's time (bench.catalog_scale).
        """
        values = [v for v in (where.model_id, where.model_version, where.role, where.party_id) if v]
        sql = self._find_sql(tuple(bool(v) for v in (where.model_id, where.model_version, where.role, where.party_id)))
        with self.db.connection_context():
            cursor = self.db.execute_sql(sql, values)  # type: ignore[no-untyped-call]  # peewee is untyped here
            names = [column[0] for column in cursor.description]
            rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        return [
            PartyModelInfo(
                role=r["role"],
                party_id=r["party_id"],
                model_id=r["model_id"],
                model_version=r["model_version"],
                roles_json=r["roles_json"],
                create_time=_timestamp(r["create_time"]),
                loaded_times=r["loaded_times"],
                size_kib=round(r["size_bytes"] / 1024),
                parent=bool(r["parent"]),
                parent_info_json=r["parent_info_json"],
                imported=bool(r["imported"]),
                job_id=r["job_id"],
                manifest_digest=r["manifest_digest"],
                file_count=r["file_count"],
                size_bytes=r["size_bytes"],
            )
            for r in rows
        ]

    def _find_sql(self, filled: tuple[bool, ...]) -> str:
        sql = self._find_sqls.get(filled)
        if sql is None:
            pm = self._party_model
            query = pm.select()
            for column, present in zip((pm.model_id, pm.model_version, pm.role, pm.party_id), filled, strict=True):
                if present:
                    query = query.where(column == "")  # the value is bound at each call
            sql = self._find_sqls[filled] = query.order_by(pm.role, pm.party_id).sql()[0]
        return sql

    def list_versions(self, model_id: str, page_size: int, page_token: str) -> tuple[list[ModelVersion], str]:
        """Versions newest first, with the parties holding each; keyset-paged on (create_time, version)."""
        pm, version = self._party_model, self._version
        query = version.select()
        if model_id:
            query = query.where(version.model_id == model_id)
        if page_token:
            start, last = paging.decode_token(page_token)
            query = query.where(
                (version.create_time < start) | ((version.create_time == start) & (version.model_version < last))
            )
        size = paging.page_size(page_size)
        with self.db.connection_context():
            groups = list(query.order_by(version.create_time.desc(), version.model_version.desc()).limit(size + 1))
            more = len(groups) > size
            groups = groups[:size]
            parties = list(
                pm.select(pm.model_id, pm.model_version, pm.role, pm.party_id)
                .where(pm.model_version.in_([g.model_version for g in groups]))
                .order_by(pm.role, pm.party_id)
                .dicts()
            )
        versions = [
            ModelVersion(
                model_id=g.model_id,
                model_version=g.model_version,
                create_time=_timestamp(g.create_time),
                parties=[
                    Party(role=p["role"], party_id=p["party_id"])
                    for p in parties
                    if (p["model_id"], p["model_version"]) == (g.model_id, g.model_version)
                ],
            )
            for g in groups
        ]
        token = paging.encode_token(groups[-1].create_time, groups[-1].model_version) if more else ""
        return versions, token

    # -- operation log --------------------------------------------------------------------------

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
                status="running",
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
        """Persist a two-phase operation's state before acting on it; only its owner may (a replica
        whose operation was taken over while it stalled learns so here, before it decides anything)."""
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
        """The operations in ``statuses`` this replica owns or whose owner is not among ``live``
        (a subquery of replica ids), except one-hop transfers, which the transfer sweep settles."""
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
        """Close the log entry of a single-phase operation whose replica stopped while it ran. Kinds in
        ``in_doubt`` whose party may have done the work (relayed calls, no ticket) become "in_doubt"
        instead: the party is asked later (:meth:`in_doubt`)."""
        op = self._operation
        mine = (op.operation_id == operation_id) & (op.status == "running") & (op.owner == self.owner)
        with self.db.connection_context():
            if in_doubt:
                doubted = (
                    op.update(status="in_doubt")
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
            op.update(
                status="interrupted",
                end_time=now_ms(),
                retcode=Retcode.OPERATING_ERROR,
                retmsg=message,
                results_json=_results_json(results),
            ).where(mine).execute()

    def in_doubt(self) -> list[Operation]:
        """Operations in doubt: their party's answer was lost."""
        op = self._operation
        with self.db.connection_context():
            rows = list(op.select().where(op.status == "in_doubt"))
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
            row = op.get_or_none((op.ticket == ticket) & (op.status == "running"))
        return None if row is None else _operation_entity(row)

    def stale_transfers(self, started_before_ms: int) -> list[tuple[str, Operation]]:
        """Running one-hop transfers started before the given time: (ticket, operation)."""
        op = self._operation
        with self.db.connection_context():
            rows = list(
                op.select().where((op.ticket != "") & (op.status == "running") & (op.start_time < started_before_ms))
            )
        return [(r.ticket, _operation_entity(r)) for r in rows]

    def open_transfers(self, live: peewee.SelectQuery) -> list[OpenTransfer]:
        """Running one-hop transfers of this replica, or of a replica not among ``live`` (a subquery of replica ids)."""
        op = self._operation
        with self.db.connection_context():
            rows = list(
                op.select()
                .where(
                    (op.ticket != "") & (op.status == "running") & ((op.owner == self.owner) | op.owner.not_in(live))
                )
                .order_by(op.start_time)
            )
        return [
            OpenTransfer(r.ticket, _operation_entity(r), Unfinished(r.operation_id, r.status, {}, r.owner))
            for r in rows
        ]

    def unsettled(self, kinds: Sequence[str], model_id: str, model_version: str) -> list[Operation]:
        """Operations of ``kinds`` in doubt, and running one-hop transfers of those kinds of this replica
        (an empty ``model_id`` or ``model_version`` matches any)."""
        op = self._operation
        one_hop = (op.status == "running") & (op.ticket != "") & (op.owner == self.owner)
        query = op.select().where(((op.status == "in_doubt") | one_hop) & op.operation.in_(list(kinds)))
        for column, value in ((op.model_id, model_id), (op.model_version, model_version)):
            if value:
                query = query.where(column == value)
        with self.db.connection_context():
            rows = list(query)
        return [_operation_entity(r) for r in rows]

    def finish_operation(
        self, operation_id: str, status: str, results: Sequence[PartyResult], retcode: int, retmsg: str
    ) -> None:
        op = self._operation
        with self.db.connection_context():
            op.update(
                status=status,
                end_time=now_ms(),
                results_json=_results_json(results),
                retcode=retcode,
                retmsg=retmsg,
                ticket="",
            ).where(op.operation_id == operation_id).execute()
            row = op.get_or_none(op.operation_id == operation_id)
        if row is not None:
            metrics.observe_operation(row.operation, status, max(0, row.end_time - row.start_time) / 1000)

    def count_versions(self) -> int:
        """The model versions some party holds."""
        with self.db.connection_context():
            return int(self._version.select().count())

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
    return json.dumps(
        [
            {"role": r.role, "party_id": r.party_id, "retcode": r.retcode, "retmsg": r.retmsg, "reason": r.reason}
            for r in results
        ]
    )


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
        start_time=_timestamp(row.start_time),
        end_time=_timestamp(row.end_time) if row.end_time else None,
        results=_results_of(row),
        retcode=row.retcode,
        retmsg=row.retmsg,
    )
