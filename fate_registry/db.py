"""Open the peewee database a :class:`DatabaseConf` names (SQLite file or MySQL pool)."""

from __future__ import annotations

import contextlib
import datetime
import random
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import peewee
from playhouse.pool import PooledMySQLDatabase, PooledSqliteDatabase
from pymysql.constants import CLIENT

from fate_registry.config import DatabaseConf
from fate_registry.errors import Reason, RegistryError
from fate_registry.mysql_errors import Failure, ServerFailure, server_failure

SQLITE_BUSY_SECONDS = 60


def open_database(conf: DatabaseConf, what: str = "the database") -> peewee.Database:
    """``what`` names the database in errors ("the catalog database"), with :func:`mysql_url` for MySQL."""
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
    return _MySQLDatabase(conf, what)


def mysql_url(conf: DatabaseConf) -> str:
    """``mysql://user@host:port/name``: where a MySQL database is, without its password."""
    host = f"[{conf.host}]" if ":" in conf.host else conf.host
    return f"mysql://{conf.user}@{host}:{conf.port}/{conf.name}"


class _MySQLDatabase(PooledMySQLDatabase):  # type: ignore[misc]  # playhouse is untyped
    """A MySQL pool that turns a failure to reach its server, or to be let in, into a :class:`RegistryError`
    naming the database and its user (never the password): UNAVAILABLE (FATE's 105) or PERMISSION_DENIED
    (108), as the model stores answer.

    Every connection, statement and transaction step goes through the methods below, so whoever uses
    the database, at start or in a call, gets that error instead of pymysql's, and no one else maps it.
    """

    def __init__(self, conf: DatabaseConf, what: str) -> None:
        super().__init__(
            conf.name,
            host=conf.host,
            port=conf.port,
            user=conf.user,
            password=conf.password.get_secret_value(),
            charset="utf8mb4",
            max_connections=conf.max_connections,
            stale_timeout=conf.stale_timeout,
            # An UPDATE's row count is the rows it matched, as on SQLite, not only those it changed:
            # a compare-and-set that rewrites identical values still reports that it held.
            client_flag=CLIENT.FOUND_ROWS,
        )
        self._named_as = f"{what} {mysql_url(conf)}"
        self._user_name = conf.user

    def _error(self, failure: Failure) -> RegistryError:
        if failure.kind is ServerFailure.ACCESS_DENIED:
            refused = f"{self._named_as} refused the user {self._user_name}: {failure.detail}"
            return RegistryError(Reason.PERMISSION_DENIED, refused)
        if failure.kind is ServerFailure.UNKNOWN_DATABASE:
            return RegistryError(Reason.PARTY_UNAVAILABLE, f"{self._named_as} does not exist on its server")
        return RegistryError(Reason.PARTY_UNAVAILABLE, f"{self._named_as} cannot be reached: {failure.detail}")

    @contextlib.contextmanager
    def _named_failures(self) -> Iterator[None]:
        try:
            yield
        except peewee.PeeweeException as exc:
            failure = server_failure(exc)
            if failure is None:
                raise
            raise self._error(failure) from exc

    def connect(self, reuse_if_open: bool = False) -> bool:
        with self._named_failures():
            return bool(super().connect(reuse_if_open))

    def execute_sql(self, sql: str, params: Any = None) -> Any:
        with self._named_failures():
            return super().execute_sql(sql, params)

    def begin(self, isolation_level: str | None = None) -> None:
        with self._named_failures():
            super().begin(isolation_level)

    def commit(self) -> None:
        with self._named_failures():
            super().commit()

    def rollback(self) -> None:
        with self._named_failures():
            super().rollback()


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
