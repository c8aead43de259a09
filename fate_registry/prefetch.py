"""Run an iterator on a thread of its own, a bounded number of items ahead of its consumer.

Streams pair a side that talks gRPC with a side that hashes and writes (or reads and hashes);
both release the GIL for large buffers, so on two cores they overlap. The queue bound keeps
memory flat: at most ``depth`` items wait between the two sides.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
_POLL_SECONDS = 0.2


class _End:
    pass


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class _Prefetcher(Generic[T]):
    def __init__(self, items: Iterator[T], depth: int, name: str) -> None:
        self._items = items
        self._queue: queue.Queue[T | _End | _Failure] = queue.Queue(maxsize=depth)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._produce, name=name, daemon=True)
        self._thread.start()

    def _put(self, item: T | _End | _Failure) -> bool:
        while not self._stopped.is_set():
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for item in self._items:
                if not self._put(item):
                    return
            self._put(_End())
        except BaseException as exc:  # handed to the consumer, who raises it
            self._put(_Failure(exc))

    def __iter__(self) -> Iterator[T]:
        try:
            while True:
                item = self._queue.get()
                if isinstance(item, _End):
                    return
                if isinstance(item, _Failure):
                    raise item.exc
                yield item
        finally:
            self._stopped.set()  # a consumer that stops early releases the producer


def prefetch(items: Iterator[T], depth: int = 8, name: str = "prefetch") -> Iterator[T]:
    """The same items in the same order, produced on another thread (called ``name``) up to ``depth`` ahead."""
    return iter(_Prefetcher(items, depth, name))
