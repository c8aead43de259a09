"""Open the peewee database a :class:`DatabaseConf` names (SQLite file or MySQL pool)."""

from __future__ import annotations

import datetime
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

import peewee
from playhouse.pool import PooledMySQLDatabase, PooledSqliteDatabase
from pymysql.constants import CLIENT

from fate_registry.config import DatabaseConf

SQLITE_BUSY_SECONDS = 60


def open_database(conf: DatabaseConf) -> peewee.Database:
    if conf.engine == "sqlite":
        assert conf.path is not None
        conf.path.parent.mkdir(parents=True, exist_ok=True)
        # WAL lets readers run beside the writer; synchronous=FULL so a committed row survives power loss.
        # Pooled: a call's connection goes back to the pool instead of being closed, so a call does not
        # pay for opening the file and setting the pragmas again (bench.catalog_scale measures it).
        # Writers queue for SQLite's one write lock: under load (64 clients, a busy disk) the wait passed
        # 10 s and the call failed with "database is locked", so a writer now waits as long as a call may
        # (timeout covers the pragmas run at connect, busy_timeout what follows).
        sqlite: peewee.Database = PooledSqliteDatabase(
            str(conf.path),
            pragmas={
                "journal_mode": "wal",
                "synchronous": "full",
                "busy_timeout": SQLITE_BUSY_SECONDS * 1000,
                "foreign_keys": 1,
            },
            timeout=SQLITE_BUSY_SECONDS,
            check_same_thread=False,
            max_connections=None,
            stale_timeout=None,
        )
        return sqlite
    mysql: peewee.Database = PooledMySQLDatabase(
        conf.name,
        host=conf.host,
        port=conf.port,
        user=conf.user,
        password=conf.password,
        charset="utf8mb4",
        max_connections=conf.max_connections,
        stale_timeout=conf.stale_timeout,
        # An UPDATE's row count is the rows it matched, as on SQLite, not only those it changed:
        # a compare-and-set that rewrites identical values still reports that it held.
        client_flag=CLIENT.FOUND_ROWS,
    )
    return mysql


def now_ms() -> int:
    return int(datetime.datetime.now().timestamp() * 1000)


def base_model(db: peewee.Database) -> Any:
    """A fresh peewee base class bound to ``db``, so several stores can live in one process."""

    class Base(peewee.Model):
        class Meta:
            database = db

    return Base


def db_now_ms(db: peewee.Database) -> peewee.Node:
    """The database server's clock in epoch milliseconds, as SQL: replicas on several hosts compare
    leases against one clock instead of each against its own."""
    if isinstance(db, peewee.MySQLDatabase):
        return peewee.SQL("CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)")
    return peewee.SQL("CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)")


def conflict_target(db: peewee.Database, columns: list[Any]) -> list[Any] | None:
    """The unique key an upsert names: SQLite needs it, MySQL refuses it (it uses whichever key clashed)."""
    return None if isinstance(db, peewee.MySQLDatabase) else columns


T = TypeVar("T")
CONFLICT_ATTEMPTS = 8
# MySQL's "deadlock found" (1213) and "lock wait timeout" (1205): the transaction was rolled back whole.
_RETRYABLE_MYSQL = (1213, 1205)


def in_transaction(db: peewee.Database, work: Callable[[], T]) -> T:
    """Run ``work`` in one transaction, again from the start when the database rolled it back for a
    deadlock or lock timeout (concurrent replicas writing the same rows); other errors pass through."""
    for attempt in range(CONFLICT_ATTEMPTS):
        try:
            with db.connection_context(), db.atomic():
                return work()
        except peewee.OperationalError as exc:
            code = exc.args[0] if exc.args else None
            retryable = code in _RETRYABLE_MYSQL or "database is locked" in str(exc)
            if not retryable or attempt == CONFLICT_ATTEMPTS - 1:
                raise
            time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))  # back off before the retry
    raise AssertionError("unreachable")
