"""Redis engine: fixed-size chunk keys, then a header key written last.

Keys (FATE's 1.7/1.8 name for the header, which FATE filled with the whole zip)::

    FATEFlow:PipelinedModel:<party_model_id>:<model_version>                       header (JSON, below)
    FATEFlow:PipelinedModel:<party_model_id>:<model_version>:chunk:<generation>:<i>  raw bytes, i = 0, 1, ...

    header = {"format": "fate-registry/chunks-1", "generation": "<16 hex>", "size": N,
              "sha256": "<hex>", "chunks": n, "chunk_size": c}

A put writes its chunks under a fresh generation (pipelined: one batch is sent while the next is
built), then, in one MULTI/EXEC guarded by WATCH on the header, sets the header, re-arms the expiry
of its chunks and deletes the previous generation's chunks. Until that EXEC the old header and
chunks are untouched; a put that fails deletes the chunks it wrote. ``ex`` applies to every key, and
the commit re-arms the chunks' expiry so they outlive the header. Chunks an interrupted put could
not clean up (the server went away) expire with ``ex`` or are removed by the next :meth:`delete` of
that version. Chunks go by UNLINK (Redis 4+): the server frees a gigabyte of values on a thread of
its own instead of its event loop.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Iterable, Iterator
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from fate_registry.errors import Reason, RegistryError
from party_agent.storage.base import (
    HashingCounter,
    ModelStore,
    SendAhead,
    StoredObject,
    StoreKey,
    access_denied,
    already_exists,
    check_expected,
    check_pinned,
    check_stored,
    not_found,
    rechunk,
    skip_prefix,
    unavailable,
)
from party_agent.storage.config import RedisConfig

KEY_PREFIX = "FATEFlow:PipelinedModel"
HEADER_FORMAT = "fate-registry/chunks-1"
CHUNK_BYTES = 1024 * 1024
# Bytes queued in a pipeline before it is sent (one is sent while the next fills), and chunks fetched per MGET.
PIPELINE_BYTES = 8 * 1024 * 1024
READ_BATCH = 4
COMMIT_ATTEMPTS = 5
# redis-py's default retries a refused password ten times too; two quick retries cover a blip.
CONNECT_RETRIES = 2
_GLOB_SPECIALS = str.maketrans({c: "\\" + c for c in "*?[]\\"})


def _header_key(key: StoreKey) -> str:
    return f"{KEY_PREFIX}:{key.party_model_id}:{key.model_version}"


def _chunk_key(key: StoreKey, generation: str, index: int) -> str:
    return f"{_header_key(key)}:chunk:{generation}:{index}"


class RedisModelStore(ModelStore):
    """Versions in Redis, in chunks of ``chunk_bytes``."""

    engine = "redis"

    def __init__(self, config: RedisConfig, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.config = config
        self.chunk_bytes = chunk_bytes
        # RESP2: the servers FATE ran (Redis 5) do not speak RESP3, redis-py 8's default.
        self._client: redis.Redis = redis.Redis(
            host=config.host,
            port=config.port,
            db=config.db,
            password=config.password.get_secret_value() if config.password else None,
            protocol=2,
            socket_connect_timeout=10,
            socket_timeout=120,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), CONNECT_RETRIES),
        )

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """redis-py errors become registry errors naming the server, never the password."""
        try:
            yield
        except redis.AuthenticationError:
            raise access_denied(self.engine, self.config.address, "the password") from None
        except redis.ResponseError as exc:
            if "AUTH" in str(exc) or "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
                raise access_denied(self.engine, self.config.address, "the password") from None
            raise RegistryError(Reason.INTERNAL, f"redis model store at {self.config.address}: {exc}") from exc
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise unavailable(self.engine, self.config.address, type(exc).__name__) from exc

    def _header(self, key: StoreKey, raw: Any) -> dict[str, Any] | None:
        if raw is None:
            return None
        try:
            header = json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            header = None
        if not isinstance(header, dict) or header.get("format") != HEADER_FORMAT:
            raise RegistryError(
                Reason.DATA_LOSS,
                f"{_header_key(key)} in the redis model store was not written by this registry "
                "(FATE-Flow 1.7/1.8 kept a whole zip there)",
            )
        return header

    def stat(self, key: StoreKey) -> StoredObject | None:
        with self._errors():
            header = self._header(key, self._client.get(_header_key(key)))
        return None if header is None else StoredObject(int(header["size"]), str(header["sha256"]))

    def put(
        self, key: StoreKey, chunks: Iterable[bytes], expected_sha256: str | None = None, force: bool = False
    ) -> StoredObject:
        ex = self.config.ex
        with self._errors():
            if not force and self._client.exists(_header_key(key)):
                raise already_exists(self.engine, key)
            generation = secrets.token_hex(8)
            written = 0
            try:
                digest = HashingCounter()
                # a batch is sent on a thread while the next one is built: the server and the archive's
                # reading, hashing and framing work at the same time instead of taking turns
                with SendAhead[list[Any]](1, 1, "redis-send") as sends:
                    pipe = self._client.pipeline(transaction=False)
                    queued = 0
                    for index, piece in enumerate(rechunk(chunks, self.chunk_bytes)):
                        digest.update(piece)
                        pipe.set(_chunk_key(key, generation, index), piece, ex=ex)
                        written, queued = index + 1, queued + len(piece)
                        if queued >= PIPELINE_BYTES:
                            sends.submit(pipe.execute)
                            pipe, queued = self._client.pipeline(transaction=False), 0
                    sends.submit(pipe.execute)
                    sends.finish()
                check_expected(self.engine, key, expected_sha256, digest)
                header: dict[str, Any] = {
                    "format": HEADER_FORMAT,
                    "generation": generation,
                    "size": digest.size,
                    "sha256": digest.hexdigest(),
                    "chunks": written,
                    "chunk_size": self.chunk_bytes,
                }
                self._commit(key, header, force)
            except BaseException:
                with contextlib.suppress(redis.RedisError):
                    self._delete_chunks(key, generation, written)
                raise
        return StoredObject(int(header["size"]), str(header["sha256"]))

    def _commit(self, key: StoreKey, header: dict[str, Any], force: bool) -> None:
        """Set the header and drop the previous generation in one transaction, retried if the header moves."""
        ex = self.config.ex
        name = _header_key(key)
        with self._client.pipeline(transaction=True) as pipe:
            for _ in range(COMMIT_ATTEMPTS):
                try:
                    pipe.watch(name)  # type: ignore[no-untyped-call]
                    old = self._header(key, pipe.get(name))
                    if old is not None and not force:
                        raise already_exists(self.engine, key)
                    pipe.multi()
                    pipe.set(name, json.dumps(header), ex=ex)
                    if ex is not None:
                        for index in range(int(header["chunks"])):
                            pipe.expire(_chunk_key(key, str(header["generation"]), index), ex)
                    if old is not None:
                        old_keys = [_chunk_key(key, str(old["generation"]), i) for i in range(int(old["chunks"]))]
                        if old_keys:
                            pipe.unlink(*old_keys)
                    pipe.execute()
                    return
                except redis.WatchError:
                    continue
        raise RegistryError(Reason.CANCELLED, f"model {key} kept changing in the redis model store; try again")

    def _delete_chunks(self, key: StoreKey, generation: str, count: int) -> None:
        names = [_chunk_key(key, generation, i) for i in range(count)]
        for start in range(0, len(names), 1024):
            self._client.unlink(*names[start : start + 1024])

    def _stream(self, key: StoreKey, offset: int, pinned: str | None) -> Iterator[bytes]:
        with self._errors():
            header = self._header(key, self._client.get(_header_key(key)))
            if header is None:
                raise not_found(self.engine, key, "expired or deleted before it was read")
            stored = StoredObject(int(header["size"]), str(header["sha256"]))
            check_pinned(self.engine, key, stored, pinned)
            digest = HashingCounter()
            yield from skip_prefix(self._chunks(key, header), offset, digest)
        check_stored(self.engine, key, stored, digest)

    def _chunks(self, key: StoreKey, header: dict[str, Any]) -> Iterator[bytes]:
        generation, count = str(header["generation"]), int(header["chunks"])
        for start in range(0, count, READ_BATCH):
            indexes = range(start, min(count, start + READ_BATCH))
            values: list[Any] = self._client.mget([_chunk_key(key, generation, i) for i in indexes])
            for index, value in zip(indexes, values, strict=True):
                if value is None:
                    raise self._missing_chunk(key, generation, index)
                yield value

    def _missing_chunk(self, key: StoreKey, generation: str, index: int) -> RegistryError:
        header = self._header(key, self._client.get(_header_key(key)))
        if header is None or header["generation"] != generation:
            return not_found(self.engine, key, "it expired, or was replaced or deleted, while it was read")
        return RegistryError(Reason.DATA_LOSS, f"model {key} in the redis model store lacks chunk {index}")

    def delete(self, key: StoreKey) -> bool:
        name = _header_key(key)
        with self._errors():
            existed = bool(self._client.delete(name))
            # Every generation's chunks: the committed one and any an interrupted put left behind.
            pattern = f"{name.translate(_GLOB_SPECIALS)}:chunk:*"
            batch: list[Any] = []
            for chunk_name in self._client.scan_iter(match=pattern, count=1000):
                batch.append(chunk_name)
                if len(batch) >= 1000:
                    self._client.unlink(*batch)
                    batch = []
            if batch:
                self._client.unlink(*batch)
        return existed

    def close(self) -> None:
        self._client.close()
