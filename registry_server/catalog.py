"""The coordinator's federation-wide catalog.

Party model versions, and the operation log (:mod:`registry_server.operation_records`).

Rows stay inside; callers get protobuf entities (PartyModelInfo, Operation) or dataclasses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import peewee
from playhouse.migrate import SchemaMigrator, migrate

from fate_registry.config import DatabaseConf
from fate_registry.db import base_model, conflict_target, in_transaction, now_ms, open_database
from fate_registry.errors import Reason, RegistryError
from fate_registry.identity import job_ids
from fate_registry.v1.common_pb2 import ImportModelResult, Party, PartyModelInfo
from fate_registry.v1.registry_pb2 import ModelVersion
from registry_server import paging
from registry_server.operation_records import OperationRecords, operation_table, timestamp
from registry_server.tag_store import TagStore


@dataclass(frozen=True)
class ModelFilter:
    """Which catalog rows to match; an empty field matches any."""

    model_id: str = ""
    model_version: str = ""
    role: str = ""
    party_id: str = ""


class Catalog(OperationRecords):
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
            """One row per model version some party holds.

            The version list pages on its indexes instead of grouping every party row of the model.
            """

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

        OperationRow = operation_table(base)

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
                create_time=timestamp(g.create_time),
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

    def count_versions(self) -> int:
        """The model versions some party holds."""
        with self.db.connection_context():
            return int(self._version.select().count())
