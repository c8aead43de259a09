"""The engine interface every model store implements, and the helpers the engines share.

A store keeps one blob (a party model version's archive) per :class:`StoreKey`. Writes are streamed
and hashed on the way; the digest is stored beside the bytes and checked again on every read. Each
engine writes its commit marker last, so an interrupted or failed put never disturbs the copy that
was there before it.
"""

from __future__ import annotations

import abc
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, TypeVar

from fate_registry.checksums import BackgroundSha256
from fate_registry.errors import Reason, RegistryError

T = TypeVar("T")


@dataclass(frozen=True)
class StoreKey:
    """What a stored copy is named by: FATE passes the party_model_id as the engines' ``model_id``."""

    party_model_id: str
    model_version: str

    def __post_init__(self) -> None:
        for name, value in (("party_model_id", self.party_model_id), ("model_version", self.model_version)):
            if not value or len(value) > 255 or any(c in value for c in "/\\\0") or not value.isprintable():
                raise RegistryError(Reason.INVALID_ID, f"invalid {name} for the model store: {value!r}")

    def __str__(self) -> str:
        return f"{self.party_model_id} {self.model_version}"


@dataclass(frozen=True)
class StoredObject:
    """A complete stored copy: its size in bytes and the sha256 (hex) of those bytes."""

    size: int
    sha256: str


class ModelStore(abc.ABC):
    """One remote model store. Implementations are safe to share between threads."""

    engine: str

    @abc.abstractmethod
    def stat(self, key: StoreKey) -> StoredObject | None:
        """The complete copy stored under ``key``, or None when there is none."""

    def exists(self, key: StoreKey) -> bool:
        return self.stat(key) is not None

    @abc.abstractmethod
    def put(
        self, key: StoreKey, chunks: Iterable[bytes], expected_sha256: str | None = None, force: bool = False
    ) -> StoredObject:
        """Store the bytes ``chunks`` yields under ``key``, streaming.

        Without ``force`` an existing copy is never replaced (MODEL_EXISTS). When ``expected_sha256``
        is given and the bytes do not match it, nothing is committed (DATA_LOSS). Whatever goes wrong
        (a mismatch, an exception from ``chunks``, the engine going away), the previous copy stays
        complete and readable.
        """

    def open(self, key: StoreKey, offset: int = 0, pinned: StoredObject | None = None) -> Iterator[bytes]:
        """Stream the stored bytes from ``offset`` on.

        A missing copy raises MODEL_NOT_FOUND here, before any byte. The whole copy is hashed as it
        is read (the part before ``offset`` too, without yielding it), and the iterator raises
        DATA_LOSS at its end when the digest differs from the stored one. ``pinned`` is the copy a
        :meth:`stat` just returned: only that copy is read (one replaced since is CANCELLED), and
        the engine is not asked for it again.
        """
        stored = pinned or self.stat(key)
        if stored is None:
            raise not_found(self.engine, key)
        _check_offset(offset, stored.size, key)
        return self._stream(key, offset, pinned.sha256 if pinned else None)

    @abc.abstractmethod
    def _stream(self, key: StoreKey, offset: int, pinned: str | None) -> Iterator[bytes]:
        """The lazy part of :meth:`open`.

        Reads the commit marker again (the copy may have changed since) and passes what it read to :func:`check_pinned`.
        """

    def digest_first(self, size: int) -> bool:
        """Whether :meth:`put` of about ``size`` bytes should be given ``expected_sha256``.

        An engine that must write the digest before the bytes (object metadata) says so, and the caller then hashes the
        bytes in a first pass. Engines that write their commit marker last need not.
        """
        return False

    @abc.abstractmethod
    def delete(self, key: StoreKey) -> bool:
        """Remove the copy under ``key``; False when there was none."""

    def close(self) -> None:  # noqa: B027 - engines without pooled resources need nothing here
        """Release pooled connections."""


class HashingCounter:
    """sha256 (hashed beside the stream, on a thread of its own) and byte count of what goes through :meth:`update`."""

    def __init__(self) -> None:
        self._hash = BackgroundSha256()
        self.size = 0

    def update(self, data: bytes | memoryview) -> None:
        self._hash.update(data)
        self.size += len(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class SendAhead(Generic[T]):
    """Sends on threads of their own while the caller prepares the next one.

    After each :meth:`submit`, the caller waits until at most ``ahead`` sends are unfinished, so
    ``ahead + 1`` prepared batches at most are held in memory. A failed send raises from a later
    :meth:`submit` or from :meth:`finish`, which returns every send's result in submission order.
    Leaving the ``with`` block waits for the sends still running (none may land after an abort).
    """

    def __init__(self, workers: int, ahead: int, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._ahead = ahead
        self._sending: deque[Future[T]] = deque()
        self._results: list[T] = []

    def submit(self, send: Callable[[], T]) -> None:
        self._sending.append(self._pool.submit(send))
        while len(self._sending) > self._ahead:
            self._results.append(self._sending.popleft().result())

    def finish(self) -> list[T]:
        while self._sending:
            self._results.append(self._sending.popleft().result())
        return self._results

    def __enter__(self) -> SendAhead[T]:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def rechunk(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Regroup ``chunks`` into pieces of exactly ``size`` bytes (the last may be shorter, never empty).

    A chunk of exactly ``size`` that arrives on a boundary passes through; other bytes are copied once.
    """
    buffer = bytearray()
    for chunk in chunks:
        if not buffer and len(chunk) == size:
            yield chunk
            continue
        buffer += chunk
        while len(buffer) >= size:
            with memoryview(buffer) as view:
                piece = bytes(view[:size])
            del buffer[:size]
            yield piece
    if buffer:
        yield bytes(buffer)


def skip_prefix(pieces: Iterable[bytes], offset: int, digest: HashingCounter) -> Iterator[bytes]:
    """Hash every piece into ``digest`` and yield only the bytes from ``offset`` on."""
    position = 0
    for piece in pieces:
        digest.update(piece)
        end = position + len(piece)
        if end > offset:
            yield piece if position >= offset else piece[offset - position :]
        position = end


def _check_offset(offset: int, size: int, key: StoreKey) -> None:
    if offset < 0 or offset > size:
        raise RegistryError(
            Reason.INVALID_ARGUMENT, f"offset {offset} is outside the stored model {key} ({size} bytes)"
        )


def already_exists(engine: str, key: StoreKey) -> RegistryError:
    """FATE's FileExistsError, as a registry error."""
    return RegistryError(
        Reason.MODEL_EXISTS,
        f"The model {key.party_model_id} {key.model_version} already exists in the {engine} model store; "
        "use force to replace it.",
        {"engine": engine},
    )


def not_found(engine: str, key: StoreKey, detail: str = "") -> RegistryError:
    """MODEL_NOT_FOUND for ``key`` in the ``engine`` model store, with ``detail`` if given."""
    suffix = f" ({detail})" if detail else ""
    return RegistryError(
        Reason.MODEL_NOT_FOUND,
        f"The model {key.party_model_id} {key.model_version} is not in the {engine} model store{suffix}.",
        {"engine": engine},
    )


def _digest_mismatch(engine: str, key: StoreKey, expected: str, actual: str, what: str) -> RegistryError:
    return RegistryError(
        Reason.DATA_LOSS,
        f"sha256 mismatch for model {key} in the {engine} model store: {what} {expected}, got {actual}",
        {"engine": engine},
    )


def check_expected(engine: str, key: StoreKey, expected: str | None, digest: HashingCounter) -> None:
    """DATA_LOSS when the bytes written so far do not hash to the caller's expected sha256."""
    if expected is not None and digest.hexdigest() != expected.lower():
        raise _digest_mismatch(engine, key, expected.lower(), digest.hexdigest(), "expected")


def check_pinned(engine: str, key: StoreKey, stored: StoredObject, pinned: str | None) -> None:
    """CANCELLED when the caller asked for the copy of digest ``pinned`` and the stored one is another."""
    if pinned is not None and stored.sha256 != pinned:
        raise RegistryError(
            Reason.CANCELLED,
            f"model {key} in the {engine} model store is no longer the copy asked for (sha256 {pinned}): "
            f"it was replaced (now {stored.sha256}); try again",
            {"engine": engine},
        )


def check_stored(engine: str, key: StoreKey, stored: StoredObject, digest: HashingCounter) -> None:
    """DATA_LOSS when the bytes read back differ from what the commit marker recorded."""
    if digest.size != stored.size:
        raise RegistryError(
            Reason.DATA_LOSS,
            f"model {key} in the {engine} model store is {digest.size} bytes long, its record says {stored.size}",
            {"engine": engine},
        )
    if digest.hexdigest() != stored.sha256:
        raise _digest_mismatch(engine, key, stored.sha256, digest.hexdigest(), "stored")


def unavailable(engine: str, address: str, detail: str) -> RegistryError:
    """The engine cannot be reached or went away mid-call; ``detail`` must hold no secret."""
    return RegistryError(
        Reason.PARTY_UNAVAILABLE,
        f"the {engine} model store at {address} is unavailable: {detail}",
        {"engine": engine},
    )


def access_denied(engine: str, address: str, who: str) -> RegistryError:
    """The engine refused our credentials. Names the user or key id, never the secret."""
    return RegistryError(
        Reason.PERMISSION_DENIED,
        f"the {engine} model store at {address} refused {who}: check model_store_address",
        {"engine": engine},
    )


def misconfigured(engine: str, detail: str) -> RegistryError:
    """INVALID_ARGUMENT naming ``model_store_address`` and the engine; ``detail`` must hold no secret."""
    return RegistryError(Reason.INVALID_ARGUMENT, f"model_store_address ({engine}): {detail}", {"engine": engine})
