"""A model store whose calls and bytes are counted by engine (:mod:`fate_registry.metrics`).

It is what :func:`party_agent.storage.open_store` hands out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from fate_registry import metrics
from party_agent.storage.base import ModelStore, StoredObject, StoreKey


class MeteredStore(ModelStore):
    """Every call of ``inner``, counted by engine, call and outcome; the bytes put and read, by engine."""

    def __init__(self, inner: ModelStore) -> None:
        self.inner = inner
        self.engine = inner.engine

    def stat(self, key: StoreKey) -> StoredObject | None:
        with metrics.store_call(self.engine, "stat"):
            return self.inner.stat(key)

    def put(
        self, key: StoreKey, chunks: Iterable[bytes], expected_sha256: str | None = None, force: bool = False
    ) -> StoredObject:
        with metrics.store_call(self.engine, "put"):
            return self.inner.put(key, metrics.store_bytes(chunks, self.engine, "put"), expected_sha256, force)

    def open(self, key: StoreKey, offset: int = 0, pinned: StoredObject | None = None) -> Iterator[bytes]:
        with metrics.store_call(self.engine, "open"):
            stream = self.inner.open(key, offset, pinned)
        return self._read(stream)

    def _read(self, stream: Iterator[bytes]) -> Iterator[bytes]:
        """The opened stream, counted as one ``read`` call.

        Its failures (DATA_LOSS at the end, an engine error midway, a reader that stops early) come while it
        is read, after ``open`` has answered.
        """
        with metrics.store_call(self.engine, "read"):
            yield from metrics.store_bytes(stream, self.engine, "read")

    def _stream(self, key: StoreKey, offset: int, pinned: str | None) -> Iterator[bytes]:
        raise AssertionError("open is the inner store's")  # pragma: no cover

    def digest_first(self, size: int) -> bool:
        return self.inner.digest_first(size)

    def delete(self, key: StoreKey) -> bool:
        with metrics.store_call(self.engine, "delete"):
            return self.inner.delete(key)

    def close(self) -> None:
        self.inner.close()
