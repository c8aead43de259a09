"""The agent's metadata database: FATE's model info table plus our manifest and publish journal.

Rows never leave this module: callers get :class:`PartyModelRecord` and :class:`PendingPublish`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import peewee

from fate_registry.config import DatabaseConf
from fate_registry.db import base_model, now_ms, open_database
from fate_registry.v1.common_pb2 import PartyModelRef
from party_agent.manifest import Manifest


@dataclass(frozen=True)
class PartyModelRecord:
    """One party's slice of one model version, as FATE's ``t_machine_learning_model_info`` knows it."""

    role: str
    party_id: str
    model_id: str
    model_version: str
    job_id: str
    manifest: Manifest
    roles_json: str = "{}"
    initiator_role: str = ""
    initiator_party_id: str = ""
    fate_version: str = ""
    parent: bool = True
    parent_info_json: str = "{}"
    train_dsl_json: str = "{}"
    train_runtime_conf_json: str = "{}"
    inference_dsl_json: str = "{}"
    runtime_conf_on_party_json: str = "{}"
    loaded_times: int = 0
    imported: bool = False
    create_time_ms: int = 0

    @property
    def size_kib(self) -> int:
        return round(self.manifest.total_size / 1024)

    @property
    def ref(self) -> PartyModelRef:
        """The version this record describes."""
        return PartyModelRef(
            role=self.role, party_id=self.party_id, model_id=self.model_id, model_version=self.model_version
        )


@dataclass(frozen=True)
class PendingPublish:
    """A journal entry: ``staged`` is being renamed to ``target`` (old copy parked in ``trash``)."""

    id: str
    target: str
    staged: str
    trash: str
    record: PartyModelRecord | None


def record_to_json(record: PartyModelRecord | None) -> str:
    """``record`` as JSON, manifest included; ``""`` for None."""
    if record is None:
        return ""
    # not dataclasses.asdict: it would deep-copy every file record of the manifest first
    data: dict[str, Any] = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
    data["manifest"] = record.manifest.to_json()
    return json.dumps(data)


def record_from_json(text: str) -> PartyModelRecord | None:
    """The record :func:`record_to_json` wrote; None for ``""``."""
    if not text:
        return None
    data = json.loads(text)
    data["manifest"] = Manifest.from_json(data["manifest"])
    return PartyModelRecord(**data)


class MetadataStore:
    """The agent's metadata database: FATE's model info table, with our manifest and publish journal."""

    def __init__(self, conf: DatabaseConf) -> None:
        self.db = open_database(conf, "the metadata database")
        base = base_model(self.db)

        class MLModel(base):  # type: ignore[misc, valid-type]
            f_role = peewee.CharField(max_length=50)
            f_party_id = peewee.CharField(max_length=50)
            f_model_id = peewee.CharField(max_length=255)
            f_model_version = peewee.CharField(max_length=255)
            f_job_id = peewee.CharField(max_length=50)
            f_roles = peewee.TextField(default="{}")
            f_initiator_role = peewee.CharField(max_length=50, default="")
            f_initiator_party_id = peewee.CharField(max_length=50, default="")
            f_fate_version = peewee.CharField(max_length=20, default="")
            f_parent = peewee.BooleanField(default=True)
            f_parent_info = peewee.TextField(default="{}")
            f_train_dsl = peewee.TextField(default="{}")
            f_train_runtime_conf = peewee.TextField(default="{}")
            f_inference_dsl = peewee.TextField(default="{}")
            f_runtime_conf_on_party = peewee.TextField(default="{}")
            f_loaded_times = peewee.IntegerField(default=0)
            f_imported = peewee.BooleanField(default=False)
            f_size = peewee.BigIntegerField(default=0)
            f_manifest = peewee.TextField()
            f_manifest_digest = peewee.CharField(max_length=64)
            # SHA-256 of the archive last stored in, or restored from, the model store (FATE's column).
            f_archive_sha256 = peewee.CharField(max_length=64, default="")
            f_create_time = peewee.BigIntegerField()
            f_update_time = peewee.BigIntegerField()

            class Meta:
                table_name = "t_machine_learning_model_info"
                primary_key = peewee.CompositeKey("f_role", "f_party_id", "f_model_id", "f_model_version")

        class Pending(base):  # type: ignore[misc, valid-type]
            f_id = peewee.CharField(max_length=64, primary_key=True)
            f_target = peewee.TextField()
            f_staged = peewee.TextField()
            f_trash = peewee.TextField()
            f_record = peewee.TextField()

            class Meta:
                table_name = "t_registry_pending_publish"

        self._model = MLModel
        self._pending = Pending
        self._sql = _Statements(self.db, MLModel, Pending)
        with self.db.connection_context():
            self.db.create_tables([MLModel, Pending])

    def close(self) -> None:
        self.db.close()

    def _run(self, sql: str, params: Sequence[Any]) -> Any:
        """One of :class:`_Statements` on the connection (and transaction) of this thread; its cursor."""
        return self.db.execute_sql(sql, params)  # type: ignore[no-untyped-call]  # peewee is untyped here

    def _key(self, ref: PartyModelRef) -> Any:
        m = self._model
        return (
            (m.f_role == ref.role)
            & (m.f_party_id == ref.party_id)
            & (m.f_model_id == ref.model_id)
            & (m.f_model_version == ref.model_version)
        )

    def get(self, ref: PartyModelRef) -> PartyModelRecord | None:
        with self.db.connection_context():
            row = self._run(self._sql.select_model, _key_values(ref)).fetchone()
        return None if row is None else self._to_record(dict(zip(self._sql.model_columns, row, strict=True)))

    def holds_party(self, party_id: str) -> bool:
        """Whether a version of ``party_id`` is recorded here.

        This agent's own party, or one it migrated a slice to (a migrated slice stays on the agent that prepared it,
        under its new party id).
        """
        m = self._model
        with self.db.connection_context():
            return bool(m.select(m.f_party_id).where(m.f_party_id == party_id).limit(1).exists())

    def keys(self) -> set[tuple[str, str, str, str]]:
        """(role, party id, model id, model version) of every version recorded here, in one query."""
        m = self._model
        with self.db.connection_context():
            return set(m.select(m.f_role, m.f_party_id, m.f_model_id, m.f_model_version).tuples())

    def all_records(self, limit: int = 10_000) -> list[PartyModelRecord]:
        m = self._model
        with self.db.connection_context():
            rows = list(m.select().order_by(m.f_create_time.desc()).limit(limit).dicts())
        return [self._to_record(r) for r in rows]

    @staticmethod
    def _to_record(row: Mapping[str, Any]) -> PartyModelRecord:
        return PartyModelRecord(
            role=row["f_role"],
            party_id=row["f_party_id"],
            model_id=row["f_model_id"],
            model_version=row["f_model_version"],
            job_id=row["f_job_id"],
            manifest=Manifest.from_json(row["f_manifest"]),
            roles_json=row["f_roles"],
            initiator_role=row["f_initiator_role"],
            initiator_party_id=row["f_initiator_party_id"],
            fate_version=row["f_fate_version"],
            parent=bool(row["f_parent"]),
            parent_info_json=row["f_parent_info"],
            train_dsl_json=row["f_train_dsl"],
            train_runtime_conf_json=row["f_train_runtime_conf"],
            inference_dsl_json=row["f_inference_dsl"],
            runtime_conf_on_party_json=row["f_runtime_conf_on_party"],
            loaded_times=row["f_loaded_times"],
            imported=bool(row["f_imported"]),
            create_time_ms=row["f_create_time"],
        )

    def _upsert(self, record: PartyModelRecord) -> None:
        now = now_ms()
        values = {
            "f_role": record.role,
            "f_party_id": record.party_id,
            "f_model_id": record.model_id,
            "f_model_version": record.model_version,
            "f_job_id": record.job_id,
            "f_roles": record.roles_json,
            "f_initiator_role": record.initiator_role,
            "f_initiator_party_id": record.initiator_party_id,
            "f_fate_version": record.fate_version,
            "f_parent": record.parent,
            "f_parent_info": record.parent_info_json,
            "f_train_dsl": record.train_dsl_json,
            "f_train_runtime_conf": record.train_runtime_conf_json,
            "f_inference_dsl": record.inference_dsl_json,
            "f_runtime_conf_on_party": record.runtime_conf_on_party_json,
            "f_loaded_times": record.loaded_times,
            "f_imported": record.imported,
            "f_size": record.size_kib,
            "f_manifest": record.manifest.to_json(),
            "f_manifest_digest": record.manifest.digest,
            "f_archive_sha256": "",
            "f_create_time": record.create_time_ms or now,
            "f_update_time": now,
        }
        self._run(self._sql.delete_model, _key_values(record.ref))
        self._run(self._sql.insert_model, [values[c] for c in self._sql.model_columns])

    def save(self, record: PartyModelRecord) -> None:
        with self.db.connection_context(), self.db.atomic():
            self._upsert(record)

    def archive_sha256(self, ref: PartyModelRef) -> str:
        with self.db.connection_context():
            row = self._model.get_or_none(self._key(ref))
        return str(row.f_archive_sha256) if row is not None else ""

    def set_archive_sha256(self, ref: PartyModelRef, sha256: str) -> None:
        m = self._model
        with self.db.connection_context():
            m.update(f_archive_sha256=sha256, f_update_time=now_ms()).where(self._key(ref)).execute()

    def count_load(self, ref: PartyModelRef) -> None:
        """FATE's f_loaded_times: +1 per successful load on this party."""
        m = self._model
        with self.db.connection_context():
            m.update(f_loaded_times=m.f_loaded_times + 1, f_update_time=now_ms()).where(self._key(ref)).execute()

    def add_pending(self, pending: PendingPublish) -> None:
        with self.db.connection_context():
            self._run(
                self._sql.insert_pending,
                [pending.id, pending.target, pending.staged, pending.trash, record_to_json(pending.record)],
            )

    def pending(self) -> list[PendingPublish]:
        with self.db.connection_context():
            rows = list(self._pending.select())
        return [PendingPublish(r.f_id, r.f_target, r.f_staged, r.f_trash, record_from_json(r.f_record)) for r in rows]

    def remove(self, ref: PartyModelRef, pending_id: str) -> None:
        """Finish a delete in one transaction: the model row and the journal entry go together."""
        with self.db.connection_context(), self.db.atomic():
            self._model.delete().where(self._key(ref)).execute()
            self._pending.delete().where(self._pending.f_id == pending_id).execute()

    def complete(self, pending_id: str, record: PartyModelRecord | None) -> None:
        """Finish a publish in one transaction: the model row (if any) and the journal entry go together."""
        with self.db.connection_context(), self.db.atomic():
            if record is not None:
                self._upsert(record)
            self._run(self._sql.delete_pending, [pending_id])


def _key_values(ref: PartyModelRef) -> list[str]:
    return [ref.role, ref.party_id, ref.model_id, ref.model_version]


class _Statements:
    """The SQL of the statements every deploy and publish runs, written once instead of per call.

    Building a query through peewee's expression tree costs about half a millisecond per statement,
    more than SQLite takes to run it; these name the columns in the models' declared order and use
    the database's own identifier quotes and parameter mark.
    """

    def __init__(self, db: peewee.Database, model: Any, pending: Any) -> None:
        def quoted(name: str) -> str:
            return f"{db.quote[0]}{name}{db.quote[1]}"

        def marks(count: int) -> str:
            return ", ".join([db.param] * count)

        self.model_columns: tuple[str, ...] = tuple(f.column_name for f in model._meta.sorted_fields)
        table = quoted(model._meta.table_name)
        key = " AND ".join(
            f"{quoted(c)} = {db.param}" for c in ("f_role", "f_party_id", "f_model_id", "f_model_version")
        )
        columns = ", ".join(quoted(c) for c in self.model_columns)
        self.select_model = f"SELECT {columns} FROM {table} WHERE {key}"
        self.delete_model = f"DELETE FROM {table} WHERE {key}"
        self.insert_model = f"INSERT INTO {table} ({columns}) VALUES ({marks(len(self.model_columns))})"
        pending_table = quoted(pending._meta.table_name)
        pending_columns = ("f_id", "f_target", "f_staged", "f_trash", "f_record")
        assert pending_columns == tuple(f.column_name for f in pending._meta.sorted_fields)
        self.insert_pending = (
            f"INSERT INTO {pending_table} ({', '.join(quoted(c) for c in pending_columns)}) "
            f"VALUES ({marks(len(pending_columns))})"
        )
        self.delete_pending = f"DELETE FROM {pending_table} WHERE {quoted('f_id')} = {db.param}"
