"""The coordinator's federation-wide catalog.

Party model versions, their list (:mod:`registry_server.version_list`), what FATE-Serving was told of them
(:mod:`registry_server.serving_state`), and the operation log (:mod:`registry_server.operation_records`).

Rows stay inside; callers get protobuf entities (PartyModelInfo, Operation) or dataclasses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import peewee
from playhouse.migrate import SchemaMigrator, migrate

from fate_registry.config import DatabaseConf
from fate_registry.db import base_model, conflict_target, in_transaction, now_ms, open_database
from fate_registry.errors import Reason, RegistryError
from fate_registry.identity import job_ids
from fate_registry.v1.common_pb2 import ImportModelResult, PartyModelInfo
from registry_server.operation_records import OperationRecords, operation_table, timestamp
from registry_server.serving_state import PARENT, ServingRecords, serving_tables
from registry_server.tag_store import TagStore
from registry_server.version_list import VersionListing


@dataclass(frozen=True)
class ModelFilter:
    """Which catalog rows to match; an empty field matches any."""

    model_id: str = ""
    model_version: str = ""
    role: str = ""
    party_id: str = ""


class Catalog(OperationRecords, VersionListing, ServingRecords):
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
                indexes = (
                    (("model_id", "model_version", "role", "party_id"), True),
                    (("party_id", "role", "model_version"), False),  # a party's versions (version_list)
                )

        class VersionRow(base):  # type: ignore[misc, valid-type]
            """One row per model version some party holds.

            The version list pages on its indexes instead of grouping every party row of the model.
            """

            model_id = peewee.CharField(max_length=255)
            model_version = peewee.CharField(max_length=255)
            create_time = peewee.BigIntegerField()
            state = peewee.CharField(max_length=20, default=PARENT)  # serving_state.STATES

            class Meta:
                table_name = "t_registry_model_version"
                indexes = (
                    (("model_id", "model_version"), True),
                    (("model_id", "create_time", "model_version"), False),
                    (("create_time", "model_version"), False),
                    (("state", "create_time", "model_version"), False),
                    (("model_version",), False),  # a tag's or a party's few versions (version_list)
                )

        OperationRow = operation_table(base)
        LoadedParty, ServiceBinding = serving_tables(base)

        class HostedParty(base):  # type: ignore[misc, valid-type]
            """A party id that is not one of this federation's, whose migrated slices stay with the agent of ``site``.

            ``site`` is the party that prepared them: calls for that party go to that agent.
            """

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
        self._loaded = LoadedParty
        self._binding = ServiceBinding
        tables = [PartyModel, VersionRow, OperationRow, VersionId, HostedParty, LoadedParty, ServiceBinding]
        with self.db.connection_context():
            stateless = self._add_missing_columns()
            self.db.create_tables(tables)
            self._upgrade(stateless)
            for table in tables:
                self._add_missing_indexes(table)
        self.tags = TagStore(self.db)

    def _add_missing_columns(self) -> bool:
        """Add the columns that the tables of an earlier release lack; whether the versions' state was one.

        Before the tables' indexes are made: SQLite takes an index's unknown column name for a string.
        """
        added = []
        for table, column in ((self._operation, "owner"), (self._version, "state")):
            name = table._meta.table_name
            if self.db.table_exists(name) and column not in {c.name for c in self.db.get_columns(name)}:
                migrate(SchemaMigrator.from_database(self.db).add_column(name, column, table._meta.fields[column]))
                added.append(column)
        return "state" in added

    def _upgrade(self, stateless: bool) -> None:
        """Bring a catalog written by an earlier release up to date: the version rows, their state.

        ``stateless``: the state column was just added. A version's state starts as parent or deployed: what
        FATE-Serving was told before is not known.
        """
        pm, version = self._party_model, self._version
        if not version.select().exists() and pm.select().exists():
            created = peewee.fn.MIN(pm.create_time)
            version.insert_from(
                pm.select(pm.model_id, pm.model_version, created, peewee.Value(PARENT)).group_by(
                    pm.model_id, pm.model_version
                ),
                [version.model_id, version.model_version, version.create_time, version.state],
            ).execute()
            stateless = True
        if stateless:  # every version starts as a parent: only the children's state is to be told
            child = pm.select(pm.model_id, pm.model_version).where(pm.parent == False)  # noqa: E712  # SQL, not Python
            children = [(row.model_id, row.model_version) for row in child.distinct()]
            in_transaction(self.db, lambda: self.restate(children))

    def _add_missing_indexes(self, table: Any) -> None:
        """Create the indexes of ``table`` that an existing table lacks (SQLite's create_tables does; MySQL's not)."""
        present = {index.name for index in self.db.get_indexes(table._meta.table_name)}
        for index in table._meta.fields_to_index():
            if index._name not in present:
                self.db.execute(table._schema._create_index(index, safe=False))  # type: ignore[no-untyped-call]

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
        """Insert or replace several parties' rows in one transaction.

        ``sites``: the party ids (not of this federation) whose slices among them stay with the agent of another party
        (a migrate's).
        """
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
            self.restate(versions)

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
            self.forget_serving(model_id, model_version, role, party_id)

        in_transaction(self.db, delete)

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
                create_time=timestamp(r["create_time"]),
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

    def count_versions(self) -> int:
        """The model versions some party holds."""
        with self.db.connection_context():
            return int(self._version.select().count())
