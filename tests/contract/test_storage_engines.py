"""One contract, every engine: the same tests run against MariaDB, redis-server and the COS emulator.

Each server is a real process on 127.0.0.1 in a temp directory (:mod:`tests.support.services`),
started once per module. Every test uses its own party model version, so tests never see each
other's copies. An engine differs from the others only in :class:`Harness`: how to reach its server
with the raw client (to tamper with a stored copy) and how to give it a wrong secret.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pymysql
import pytest
import redis
from prometheus_client import REGISTRY

from fate_registry.errors import Reason, RegistryError
from party_agent.storage import ModelStore, StoredObject, StoreKey, open_store
from party_agent.storage.cos import _object_key
from party_agent.storage.redis_store import _chunk_key, _header_key
from tests.support.services import CosEmulator, MariaDB, RedisServer, cos_emulator, mariadb, redis_server

ENGINES = ("mysql", "redis", "tencent_cos")
CHUNK = 256 * 1024
SMALL = os.urandom(1024)
# Larger than every engine's slice, chunk and multipart part (8 MiB at most), not a multiple of any.
LARGE = os.urandom(20 * 1024 * 1024 + 12345)
EXPIRY_DEADLINE = 15.0


def chunks_of(data: bytes, size: int = CHUNK) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Interrupted(Exception):
    """What a put's chunk iterator raises half-way."""


def interrupted_after(data: bytes, limit: int, action: Callable[[], None] | None = None) -> Iterator[bytes]:
    """Yield ``data`` up to ``limit`` bytes, then raise :class:`Interrupted`; or, given ``action``, run it
    there once and yield the rest (an engine that sends a batch while it builds the next may take every
    byte before the stopped server's error reaches it; the put must fail all the same)."""
    sent, acted = 0, False
    for piece in chunks_of(data):
        if sent >= limit and not acted:
            if action is None:
                raise Interrupted("the source failed half-way")
            action()
            acted = True
        yield piece
        sent += len(piece)
    if not acted:
        raise AssertionError("the source was expected to stop half-way")


@dataclass
class Harness:
    storage: str
    server: MariaDB | RedisServer | CosEmulator
    secret: str
    # False where a restarted server has lost everything (moto keeps objects in memory only).
    persistent: bool

    def settings(self, **overrides: Any) -> dict[str, Any]:
        return {**self.server.settings(), **overrides}

    def store(self, **overrides: Any) -> ModelStore:
        return open_store(self.storage, self.settings(**overrides))

    def wrong_secret(self) -> dict[str, Any]:
        key = "SecretKey" if self.storage == "tencent_cos" else "password"
        return {key: "not-the-" + "secret-" + uuid.uuid4().hex}

    def corrupt(self, key: StoreKey) -> None:
        """Flip one byte of the stored copy with the engine's raw client, leaving its recorded digest alone."""
        server = self.server
        if isinstance(server, MariaDB):
            with server.root_connection() as conn, conn.cursor() as cur:
                where = "f_model_id = %s AND f_model_version = %s AND f_slice_index = 0"
                ids = (key.party_model_id, key.model_version)
                cur.execute(f"SELECT f_content FROM t_machine_learning_model WHERE {where}", ids)
                row = cur.fetchone()
                assert row is not None and isinstance(row[0], bytes)
                cur.execute(f"UPDATE t_machine_learning_model SET f_content = %s WHERE {where}", (_flip(row[0]), *ids))
        elif isinstance(server, RedisServer):
            client = redis.Redis(host=server.host, port=server.port, password=server.password)
            header = json.loads(client.get(_header_key(key)) or b"{}")
            name = _chunk_key(key, header["generation"], 0)
            value = client.get(name)
            assert isinstance(value, bytes)
            client.set(name, _flip(value), keepttl=True)
            client.close()
        else:
            client = server.client()
            answer = client.get_object(Bucket=server.bucket, Key=_object_key(key))
            data = answer["Body"].get_raw_stream().read()
            meta = {k.lower(): v for k, v in answer.items() if k.lower().startswith("x-cos-meta-")}
            client.put_object(Bucket=server.bucket, Key=_object_key(key), Body=_flip(data), Metadata=meta)


def _flip(data: bytes) -> bytes:
    return bytes([data[0] ^ 0xFF]) + data[1:]


@pytest.fixture(scope="module")
def mysql_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    with mariadb(tmp_path_factory.mktemp("mariadb")) as server:
        yield server


@pytest.fixture(scope="module")
def redis_server_with_password(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis"), password="redis-" + uuid.uuid4().hex) as server:
        yield server


@pytest.fixture(scope="module")
def cos_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CosEmulator]:
    with cos_emulator(tmp_path_factory.mktemp("cos")) as server:
        yield server


@pytest.fixture(params=ENGINES)
def harness(request: pytest.FixtureRequest) -> Harness:
    storage: str = request.param
    if storage == "mysql":
        db: MariaDB = request.getfixturevalue("mysql_server")
        return Harness(storage, db, db.password, persistent=True)
    if storage == "redis":
        r: RedisServer = request.getfixturevalue("redis_server_with_password")
        assert r.password is not None
        return Harness(storage, r, r.password, persistent=True)
    cos: CosEmulator = request.getfixturevalue("cos_server")
    return Harness(storage, cos, cos.secret_key, persistent=False)


@pytest.fixture
def store(harness: Harness) -> Iterator[ModelStore]:
    engine = harness.store()
    yield engine
    engine.close()


@pytest.fixture
def key() -> StoreKey:
    return StoreKey(
        f"guest#9999#arbiter-10000#guest-9999#host-10000#model_{uuid.uuid4().hex[:8]}", "2024010112000000000001"
    )


def read_all(store: ModelStore, key: StoreKey, offset: int = 0) -> bytes:
    return b"".join(store.open(key, offset))


def assert_reason(error: pytest.ExceptionInfo[RegistryError], reason: Reason) -> None:
    assert error.value.reason is reason, f"{error.value.reason}: {error.value}"


# ------------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("data", [SMALL, LARGE], ids=["1KiB", "20MiB"])
def test_put_then_open_gives_the_same_bytes(store: ModelStore, key: StoreKey, data: bytes) -> None:
    stored = store.put(key, chunks_of(data))
    assert (stored.size, stored.sha256) == (len(data), sha256(data))
    assert store.stat(key) == stored
    assert store.exists(key)
    assert read_all(store, key) == data


def test_a_512_mib_model_round_trips(store: ModelStore, key: StoreKey) -> None:
    """The issue's large case, streamed both ways: never more than a few MiB in memory."""
    block = os.urandom(1024 * 1024)
    expected = hashlib.sha256()

    def source() -> Iterator[bytes]:
        for i in range(512):
            piece = block[i % 251 :] + block[: i % 251]  # every MiB differs
            expected.update(piece)
            yield piece

    stored = store.put(key, source())
    assert (stored.size, stored.sha256) == (512 * 1024 * 1024, expected.hexdigest())
    read_back = hashlib.sha256()
    for piece in store.open(key):
        read_back.update(piece)
    assert read_back.hexdigest() == expected.hexdigest()
    assert store.delete(key)


def test_open_from_an_offset(store: ModelStore, key: StoreKey) -> None:
    store.put(key, chunks_of(LARGE))
    for offset in (1, 8 * 1024 * 1024 + 7, len(LARGE) - 1, len(LARGE)):
        assert read_all(store, key, offset) == LARGE[offset:]
    with pytest.raises(RegistryError) as error:
        store.open(key, len(LARGE) + 1)
    assert_reason(error, Reason.INVALID_ARGUMENT)


def test_an_empty_model_round_trips(store: ModelStore, key: StoreKey) -> None:
    assert store.put(key, iter(())).size == 0
    assert read_all(store, key) == b""


def test_matching_expected_sha256_is_accepted(store: ModelStore, key: StoreKey) -> None:
    assert store.put(key, chunks_of(LARGE), expected_sha256=sha256(LARGE).upper()).sha256 == sha256(LARGE)
    assert read_all(store, key) == LARGE


def test_open_pinned_to_a_stat_reads_only_that_copy(store: ModelStore, key: StoreKey) -> None:
    store.put(key, chunks_of(LARGE))
    seen = store.stat(key)
    assert seen is not None
    assert b"".join(store.open(key, pinned=seen)) == LARGE
    replaced_meanwhile = store.open(key, pinned=seen)  # the lazy part reads the commit marker again
    store.put(key, chunks_of(b"the replacement"), force=True)
    with pytest.raises(RegistryError) as error:
        b"".join(replaced_meanwhile)
    assert_reason(error, Reason.CANCELLED)
    assert "replaced" in str(error.value)


def test_a_missing_model(store: ModelStore, key: StoreKey) -> None:
    assert store.stat(key) is None
    assert not store.exists(key)
    assert not store.delete(key)
    with pytest.raises(RegistryError) as error:
        store.open(key)
    assert_reason(error, Reason.MODEL_NOT_FOUND)
    assert key.party_model_id in str(error.value)


def test_delete(store: ModelStore, key: StoreKey) -> None:
    store.put(key, chunks_of(LARGE))
    assert store.delete(key)
    assert not store.exists(key)
    assert not store.delete(key)
    store.put(key, chunks_of(SMALL))
    assert read_all(store, key) == SMALL


# ------------------------------------------------------------------------------------------- overwrites


def test_no_overwrite_without_force(store: ModelStore, key: StoreKey) -> None:
    store.put(key, chunks_of(SMALL))
    with pytest.raises(RegistryError) as error:
        store.put(key, chunks_of(LARGE))
    assert_reason(error, Reason.MODEL_EXISTS)
    assert key.party_model_id in str(error.value) and key.model_version in str(error.value)
    assert read_all(store, key) == SMALL


@pytest.mark.parametrize(("first", "second"), [(LARGE, SMALL), (SMALL, LARGE)], ids=["shorter", "longer"])
def test_force_replaces_the_whole_copy(store: ModelStore, key: StoreKey, first: bytes, second: bytes) -> None:
    store.put(key, chunks_of(first))
    assert store.put(key, chunks_of(second), force=True).sha256 == sha256(second)
    assert store.stat(key) == StoredObject(len(second), sha256(second))
    assert read_all(store, key) == second  # no stale tail of the longer copy (FATE's W3)


@pytest.mark.parametrize("data", [SMALL, LARGE], ids=["1KiB", "20MiB"])
def test_expected_sha256_mismatch_keeps_the_old_copy(store: ModelStore, key: StoreKey, data: bytes) -> None:
    with pytest.raises(RegistryError) as error:
        store.put(key, chunks_of(data), expected_sha256=sha256(b"something else"))
    assert_reason(error, Reason.DATA_LOSS)
    assert not store.exists(key)
    old = store.put(key, chunks_of(SMALL))
    with pytest.raises(RegistryError) as error:
        store.put(key, chunks_of(data), expected_sha256=sha256(b"something else"), force=True)
    assert_reason(error, Reason.DATA_LOSS)
    assert store.stat(key) == old
    assert read_all(store, key) == SMALL


# --------------------------------------------------------------------------------------------- integrity


@pytest.mark.parametrize("data", [SMALL, LARGE], ids=["1KiB", "20MiB"])
def test_a_corrupted_copy_is_data_loss(harness: Harness, store: ModelStore, key: StoreKey, data: bytes) -> None:
    store.put(key, chunks_of(data))
    harness.corrupt(key)
    failed_reads = _store_calls(harness.storage, "read", "failure")
    with pytest.raises(RegistryError) as error:
        read_all(store, key)
    assert_reason(error, Reason.DATA_LOSS)
    assert "sha256" in str(error.value)
    assert _store_calls(harness.storage, "read", "failure") == failed_reads + 1  # counted where it failed


def _store_calls(engine: str, call: str, outcome: str) -> float:
    """The agent's model-store call counter (the store is :func:`open_store`'s, which counts its calls)."""
    labels = {"engine": engine, "call": call, "outcome": outcome}
    return REGISTRY.get_sample_value("fate_registry_store_calls_total", labels) or 0.0


@pytest.mark.parametrize("data", [SMALL, LARGE], ids=["1KiB", "20MiB"])
def test_an_interrupted_put_leaves_the_previous_copy(store: ModelStore, key: StoreKey, data: bytes) -> None:
    with pytest.raises(Interrupted):
        store.put(key, interrupted_after(LARGE, len(LARGE) // 2))
    assert not store.exists(key)
    store.put(key, chunks_of(data))
    with pytest.raises(Interrupted):
        store.put(key, interrupted_after(LARGE, len(LARGE) // 2), force=True)
    assert store.stat(key) == StoredObject(len(data), sha256(data))
    assert read_all(store, key) == data
    # and the store is usable right after
    store.put(key, chunks_of(SMALL), force=True)
    assert read_all(store, key) == SMALL


# ----------------------------------------------------------------------------------------------- faults


def test_a_wrong_secret_is_a_clear_error_without_the_secret(
    harness: Harness, key: StoreKey, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = harness.wrong_secret()
    secret = next(iter(wrong.values()))
    store = harness.store(**wrong)
    with pytest.raises(RegistryError) as error:
        store.put(key, chunks_of(SMALL))
    assert_reason(error, Reason.PERMISSION_DENIED)
    message = str(error.value)
    assert harness.storage in message and "127.0.0.1" in message
    for text in (message, repr(error.value), repr(error.value.metadata), repr(store.__dict__), caplog.text):
        assert secret not in text
        assert harness.secret not in text
    store.close()


def test_secrets_stay_out_of_the_configs_repr(harness: Harness) -> None:
    store = harness.store()
    assert harness.secret not in repr(store.__dict__)
    store.close()


def test_a_server_stopped_mid_put_is_a_clear_error(harness: Harness, store: ModelStore, key: StoreKey) -> None:
    store.put(key, chunks_of(SMALL))
    try:
        with pytest.raises(RegistryError) as error:
            store.put(key, interrupted_after(LARGE, len(LARGE) // 2, harness.server.stop), force=True)
    finally:
        harness.server.start()
    assert_reason(error, Reason.PARTY_UNAVAILABLE)
    assert harness.storage in str(error.value) and "127.0.0.1" in str(error.value)
    if harness.persistent:
        assert read_all(store, key) == SMALL
    # the same store object works again once the server is back
    store.put(key, chunks_of(LARGE), force=True)
    assert read_all(store, key) == LARGE


def test_redis_expiry_is_a_clear_not_found(redis_server_with_password: RedisServer, key: StoreKey) -> None:
    store = open_store("redis", redis_server_with_password.settings(ex=1))
    store.put(key, chunks_of(LARGE))
    deadline = time.monotonic() + EXPIRY_DEADLINE
    while store.exists(key):
        assert time.monotonic() < deadline, "the model did not expire"
        time.sleep(0.05)
    with pytest.raises(RegistryError) as error:
        store.open(key)
    assert_reason(error, Reason.MODEL_NOT_FOUND)
    client = redis.Redis(
        host=redis_server_with_password.host,
        port=redis_server_with_password.port,
        password=redis_server_with_password.password,
    )
    assert client.keys(f"{_header_key(key)}*") == []  # every chunk key expired too
    client.close()
    store.close()


def test_a_missing_cos_bucket_is_a_clear_error(cos_server: CosEmulator, key: StoreKey) -> None:
    store = open_store("tencent_cos", cos_server.settings(Bucket="no-such-bucket"))
    with pytest.raises(RegistryError) as error:
        store.exists(key)
    assert "no-such-bucket" in str(error.value) and "does not exist" in str(error.value)


def test_settings_are_checked(mysql_server: MariaDB) -> None:
    with pytest.raises(RegistryError) as error:
        open_store("mysql", {**mysql_server.settings(), "pasword": "x"})
    assert "pasword" in str(error.value)
    with pytest.raises(RegistryError) as error:
        open_store("hdfs", {})
    assert "not supported" in str(error.value)
    with pytest.raises(RegistryError) as error:
        open_store("mysql", {**mysql_server.settings(), "database": "nope"}).exists(
            StoreKey("guest#9999#guest-9999#model", "1")
        )
    # MariaDB answers "access denied" for a database the user may not see, whether it exists or not
    assert_reason(error, Reason.PERMISSION_DENIED)
    assert "nope" in str(error.value)


def test_a_mysql_table_in_fates_layout_is_refused(mysql_server: MariaDB) -> None:
    with mysql_server.root_connection() as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE fate_flow_layout")
        cur.execute("GRANT ALL PRIVILEGES ON fate_flow_layout.* TO %s@'%%'", (mysql_server.user,))
        cur.execute(
            "CREATE TABLE fate_flow_layout.t_machine_learning_model (f_model_id CHAR(100), f_model_version CHAR(100),"
            " f_size BIGINT, f_content LONGTEXT, f_slice_index INT)"
        )
    store = open_store("mysql", {**mysql_server.settings(), "database": "fate_flow_layout"})
    with pytest.raises(RegistryError) as error:
        store.exists(StoreKey("guest#9999#guest-9999#model", "1"))
    assert "FATE-Flow's layout" in str(error.value)
    with pymysql.connect(unix_socket=str(mysql_server.socket_path), user="root") as conn, conn.cursor() as cur:
        cur.execute("DROP DATABASE fate_flow_layout")
