"""Coordinator replicas sharing one catalog: who is alive, decided by leases in the database.

Each replica holds one row of ``t_registry_replica`` and renews its lease (``expires_ms``, on the
database's clock) every third of the lease time. Every operation row names the replica that owns
it; another replica takes an unfinished operation over only when its owner's lease has expired,
and claims it with a compare-and-set on the owner column, so two live replicas never recover the
same operation, and never one whose owner is still working on it.
"""

from __future__ import annotations

import socket
import uuid

import peewee

from fate_registry.config import CoordinatorConf
from fate_registry.db import base_model, conflict_target, db_now_ms, in_transaction


def replica_name(conf: CoordinatorConf) -> str:
    """The configured replica id, else ``<host name>:<port>``.

    A replica on a system-chosen port (port 0) has no stable name and gets a fresh one per start.
    """
    if conf.replica_id:
        return conf.replica_id
    if conf.address.port:
        return f"{socket.gethostname()}:{conf.address.port}"
    return f"{socket.gethostname()}:{uuid.uuid4().hex[:12]}"


class Leases:
    """This replica's lease in ``t_registry_replica``, and which replicas are live."""

    def __init__(self, db: peewee.Database, replica_id: str, lease_seconds: float) -> None:
        self.db = db
        self.replica_id = replica_id
        self.lease_ms = int(lease_seconds * 1000)
        base = base_model(db)

        class ReplicaRow(base):  # type: ignore[misc, valid-type]
            replica_id = peewee.CharField(max_length=255, primary_key=True)
            expires_ms = peewee.BigIntegerField()

            class Meta:
                table_name = "t_registry_replica"

        self._row = ReplicaRow
        with db.connection_context():
            db.create_tables([ReplicaRow])

    def renew(self) -> None:
        """Extend this replica's lease by the lease time from now (the database's now)."""
        row = self._row
        expires = peewee.NodeList((db_now_ms(self.db), peewee.SQL("+"), self.lease_ms))

        def write() -> None:
            row.insert(replica_id=self.replica_id, expires_ms=expires).on_conflict(
                conflict_target=conflict_target(self.db, [row.replica_id]), update={row.expires_ms: expires}
            ).execute()

        in_transaction(self.db, write)

    def release(self) -> None:
        """Give the lease up (a graceful stop, after the running calls ended): takeover need not wait."""
        with self.db.connection_context():
            self._row.delete().where(self._row.replica_id == self.replica_id).execute()

    def live(self) -> peewee.SelectQuery:
        """A subquery of the replica ids whose lease has not expired."""
        row = self._row
        live: peewee.SelectQuery = row.select(row.replica_id).where(row.expires_ms >= db_now_ms(self.db))
        return live
