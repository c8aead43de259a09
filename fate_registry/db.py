"""Open the peewee database a :class:`DatabaseConf` names (SQLite file or MySQL pool)."""

from __future__ import annotations

import datetime
from typing import Any

import peewee
from playhouse.pool import PooledMySQLDatabase

from fate_registry.config import DatabaseConf

SQLITE_BUSY_SECONDS = 60


def open_database(conf: DatabaseConf) -> peewee.Database:
    if conf.engine == "sqlite":
        assert conf.path is not None
        conf.path.parent.mkdir(parents=True, exist_ok=True)
        # WAL lets readers run beside the writer; synchronous=FULL so a committed row survives power loss.
        # Writers queue for SQLite's one write lock: under load (64 clients, a busy disk) the wait passed
        # 10 s and the call failed with "database is locked", so a writer now waits as long as a call may
        # (timeout covers the pragmas run at connect, busy_timeout what follows).
        sqlite: peewee.Database = peewee.SqliteDatabase(
            str(conf.path),
            pragmas={
                "journal_mode": "wal",
                "synchronous": "full",
                "busy_timeout": SQLITE_BUSY_SECONDS * 1000,
                "foreign_keys": 1,
            },
            timeout=SQLITE_BUSY_SECONDS,
            check_same_thread=False,
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
