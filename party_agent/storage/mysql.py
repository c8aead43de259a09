"""MySQL / MariaDB engine: raw bytes in slices of ``t_machine_learning_model``, one transaction per version.

Layout (FATE's table name; raw-bytes columns instead of FATE's base64-pickled LONGTEXT)::

    t_machine_learning_model
      f_model_id      VARCHAR(255) utf8mb4_bin   party_model_id
      f_model_version VARCHAR(100) utf8mb4_bin
      f_slice_index   INT            0, 1, 2, ... for the data; -1 for the completion row
      f_size          BIGINT         bytes in this slice; the whole size on the completion row
      f_sha256        CHAR(64)       NULL on data slices; the digest on the completion row
      f_content       LONGBLOB       the slice's raw bytes; NULL on the completion row
      f_create_time   BIGINT         ms since the epoch
      PRIMARY KEY (f_model_id, f_model_version, f_slice_index)

A put deletes the old rows, inserts the slices and then the completion row, all in one InnoDB
transaction: until it commits, every reader still sees the previous copy, and a put that fails or
whose client dies is rolled back by the server. A copy counts only when its completion row exists.
Slices are sized from the server's ``max_allowed_packet`` (an escaped slice can double in size).

pymysql is used directly rather than through peewee: a read streams slices from an unbuffered
cursor on a connection the stream owns, which peewee's thread-bound connection state cannot give a
generator that may be advanced from any thread. The small pool below keeps peewee's two settings,
``max_connections`` and ``stale_timeout``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pymysql
import pymysql.cursors
from pymysql.connections import Connection

from fate_registry.errors import Reason, RegistryError
from fate_registry.mysql_errors import ServerFailure, server_failure
from party_agent.storage.base import (
    HashingCounter,
    ModelStore,
    StoredObject,
    StoreKey,
    access_denied,
    already_exists,
    check_expected,
    check_pinned,
    check_stored,
    misconfigured,
    not_found,
    rechunk,
    skip_prefix,
    unavailable,
)
from party_agent.storage.config import MySQLConfig

TABLE = "t_machine_learning_model"
COMPLETION_SLICE = -1
# Each slice is held a few times over while pymysql escapes it into a statement: 4 MiB keeps the agent's
# peak memory well under 200 MiB (8 MiB slices peaked at 221 MiB on a 1 GiB store).
MAX_SLICE_BYTES = 4 * 1024 * 1024
SLICE_ALIGN = 64 * 1024
# Room in a packet for the INSERT statement around an escaped slice.
STATEMENT_OVERHEAD = 16 * 1024
CONNECT_TIMEOUT = 10
# Seconds a caller waits for a free connection when all max_connections are in use.
ACQUIRE_TIMEOUT = 60.0

_CREATE_TABLE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
  f_model_id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  f_model_version VARCHAR(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  f_slice_index INT NOT NULL,
  f_size BIGINT NOT NULL,
  f_sha256 CHAR(64) NULL,
  f_content LONGBLOB NULL,
  f_create_time BIGINT NOT NULL,
  PRIMARY KEY (f_model_id, f_model_version, f_slice_index)
) ENGINE=InnoDB
"""
_WHERE_KEY = "f_model_id = %s AND f_model_version = %s"
_SELECT_COMPLETION = f"SELECT f_size, f_sha256 FROM {TABLE} WHERE {_WHERE_KEY} AND f_slice_index = {COMPLETION_SLICE}"
_INSERT = (
    f"INSERT INTO {TABLE} (f_model_id, f_model_version, f_slice_index, f_size, f_sha256, f_content, f_create_time)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
)


def _now_ms() -> int:
    return int(time.time() * 1000)


class _Pool:
    """At most ``max_connections`` connections; an idle one older than ``stale_timeout`` is closed, not reused."""

    def __init__(self, config: MySQLConfig) -> None:
        self._config = config
        self._slots = threading.BoundedSemaphore(config.max_connections)
        self._idle: list[tuple[float, Connection[Any]]] = []
        self._lock = threading.Lock()

    def _connect(self) -> Connection[Any]:
        c = self._config
        return pymysql.connect(
            host=c.host,
            port=c.port,
            user=c.user,
            password=c.password.get_secret_value(),
            database=c.database,
            charset="utf8mb4",
            connect_timeout=CONNECT_TIMEOUT,
            autocommit=True,
            init_command="SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        )

    def _take(self) -> Connection[Any] | None:
        stale = self._config.stale_timeout
        while True:
            with self._lock:
                if not self._idle:
                    return None
                since, conn = self._idle.pop()
            if stale is not None and time.monotonic() - since > stale:
                _close_quietly(conn)
                continue
            try:
                conn.ping(reconnect=False)
            except pymysql.MySQLError:  # the server restarted, or closed an idle connection
                _close_quietly(conn)
                continue
            return conn

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection[Any]]:
        """A connection for one operation; closed instead of pooled when the operation raised."""
        if not self._slots.acquire(timeout=ACQUIRE_TIMEOUT):
            raise unavailable("mysql", self._config.address, f"all {self._config.max_connections} connections busy")
        conn: Connection[Any] | None = None
        try:
            conn = self._take() or self._connect()
            yield conn
        except BaseException:
            if conn is not None:
                _close_quietly(conn)
            raise
        else:
            with self._lock:
                self._idle.append((time.monotonic(), conn))
        finally:
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for _, conn in idle:
            _close_quietly(conn)


def _close_quietly(conn: Connection[Any]) -> None:
    with contextlib.suppress(Exception):
        conn.close()


class MySQLModelStore(ModelStore):
    """Versions in MySQL or MariaDB, in slices no bigger than the server's ``max_allowed_packet`` allows."""

    engine = "mysql"

    def __init__(self, config: MySQLConfig) -> None:
        self.config = config
        self._pool = _Pool(config)
        self._slice_bytes: int | None = None
        self._ready_lock = threading.Lock()

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Connection[Any]]:
        """A pooled connection to a database that has our table; pymysql errors become registry errors."""
        try:
            with self._pool.connection() as conn:
                self._prepare(conn)
                yield conn
        except pymysql.MySQLError as exc:
            raise self._translate(exc) from exc

    def _prepare(self, conn: Connection[Any]) -> None:
        with self._ready_lock:
            if self._slice_bytes is not None:
                return
            with conn.cursor() as cur:
                cur.execute(_CREATE_TABLE)
                cur.execute(f"SHOW COLUMNS FROM {TABLE} LIKE 'f_sha256'")
                if cur.fetchone() is None:
                    raise misconfigured(
                        self.engine,
                        f"table {TABLE} in database {self.config.database} has FATE-Flow's layout "
                        "(base64 slices); point this registry at another database",
                    )
                cur.execute("SELECT @@max_allowed_packet")
                row = cur.fetchone()
            packet = int(row[0]) if row else 4 * 1024 * 1024
            usable = (packet - STATEMENT_OVERHEAD) // 2 // SLICE_ALIGN * SLICE_ALIGN
            self._slice_bytes = max(SLICE_ALIGN, min(MAX_SLICE_BYTES, usable))

    @property
    def slice_bytes(self) -> int:
        """Bytes per data row, from the server's ``max_allowed_packet`` (asks the server the first time)."""
        if self._slice_bytes is None:
            with self._connection():
                pass
        assert self._slice_bytes is not None
        return self._slice_bytes

    def _translate(self, exc: pymysql.MySQLError) -> RegistryError:
        address = self.config.address
        failure = server_failure(exc)
        if failure is None:
            code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
            message = exc.args[1] if len(exc.args) > 1 else type(exc).__name__
            return RegistryError(Reason.INTERNAL, f"mysql model store at {address}: error {code}: {message}")
        if failure.kind is ServerFailure.ACCESS_DENIED:
            return access_denied(
                self.engine, address, f"user {self.config.user!r} on database {self.config.database!r}"
            )
        if failure.kind is ServerFailure.UNKNOWN_DATABASE:
            return misconfigured(self.engine, f"database {self.config.database!r} does not exist at {address}")
        return unavailable(self.engine, address, failure.detail)

    def stat(self, key: StoreKey) -> StoredObject | None:
        with self._connection() as conn, conn.cursor() as cur:
            cur.execute(_SELECT_COMPLETION, (key.party_model_id, key.model_version))
            row = cur.fetchone()
        return None if row is None else StoredObject(int(row[0]), str(row[1]))

    def put(
        self, key: StoreKey, chunks: Iterable[bytes], expected_sha256: str | None = None, force: bool = False
    ) -> StoredObject:
        ids = (key.party_model_id, key.model_version)
        with self._connection() as conn:
            slice_bytes = self.slice_bytes  # known: the connection was prepared
            conn.begin()
            try:
                with conn.cursor() as cur:
                    # Locks the completion row (or the gap where it would go) until commit: a concurrent
                    # put of the same version waits here, then sees this one's result.
                    cur.execute(_SELECT_COMPLETION + " FOR UPDATE", ids)
                    if cur.fetchone() is not None and not force:
                        raise already_exists(self.engine, key)
                    cur.execute(f"DELETE FROM {TABLE} WHERE {_WHERE_KEY}", ids)
                    digest = HashingCounter()
                    for index, piece in enumerate(rechunk(chunks, slice_bytes)):
                        digest.update(piece)
                        cur.execute(_INSERT, (*ids, index, len(piece), None, piece, _now_ms()))
                    check_expected(self.engine, key, expected_sha256, digest)
                    stored = StoredObject(digest.size, digest.hexdigest())
                    cur.execute(_INSERT, (*ids, COMPLETION_SLICE, stored.size, stored.sha256, None, _now_ms()))
                conn.commit()
            except BaseException:
                with contextlib.suppress(Exception):
                    conn.rollback()
                raise
        return stored

    def _stream(self, key: StoreKey, offset: int, pinned: str | None) -> Iterator[bytes]:
        ids = (key.party_model_id, key.model_version)
        with self._connection() as conn:
            # One snapshot for the completion row and the slices: a put committing meanwhile is not seen.
            conn.query("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            # No ``with`` for this cursor: closing an unbuffered cursor reads its rest, and a stream
            # abandoned half-way should instead close the connection (the pool does that on errors).
            cur = conn.cursor(pymysql.cursors.SSCursor)
            cur.execute(_SELECT_COMPLETION, ids)
            row = cur.fetchone()
            if row is None:
                raise not_found(self.engine, key, "deleted before it was read")
            cur.fetchall()
            stored = StoredObject(int(row[0]), str(row[1]))
            check_pinned(self.engine, key, stored, pinned)
            cur.execute(
                f"SELECT f_slice_index, f_content FROM {TABLE} WHERE {_WHERE_KEY} AND f_slice_index >= 0"
                " ORDER BY f_slice_index",
                ids,
            )
            digest = HashingCounter()
            yield from skip_prefix(self._slices(cur, key), offset, digest)
            cur.close()
            conn.commit()
        check_stored(self.engine, key, stored, digest)

    def _slices(self, cur: pymysql.cursors.SSCursor, key: StoreKey) -> Iterator[bytes]:
        for expected_index, (index, content) in enumerate(cur):
            if index != expected_index:
                raise RegistryError(
                    Reason.DATA_LOSS, f"model {key} in the mysql model store lacks slice {expected_index}"
                )
            yield bytes(content)

    def delete(self, key: StoreKey) -> bool:
        with self._connection() as conn, conn.cursor() as cur:
            conn.begin()
            cur.execute(_SELECT_COMPLETION + " FOR UPDATE", (key.party_model_id, key.model_version))
            existed = cur.fetchone() is not None
            cur.execute(f"DELETE FROM {TABLE} WHERE {_WHERE_KEY}", (key.party_model_id, key.model_version))
            conn.commit()
        return existed

    def close(self) -> None:
        self._pool.close()
