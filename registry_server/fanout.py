"""Call several parties at once; the answer takes as long as the slowest party, not the sum."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent import futures
from typing import TypeVar

from fate_registry.errors import Reason, RegistryError

T = TypeVar("T")


class FanOut:
    def __init__(self, max_parallel: int = 64) -> None:
        self._pool = futures.ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="fanout")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def run(self, calls: Sequence[Callable[[], T]]) -> list[T | RegistryError]:
        """Run every call in parallel; each result is the value or the RegistryError it raised."""
        submitted = [self._pool.submit(call) for call in calls]
        results: list[T | RegistryError] = []
        for future in submitted:
            try:
                results.append(future.result())
            except RegistryError as exc:
                results.append(exc)
            except Exception as exc:  # a bug in one party's call must not lose the others' results
                results.append(RegistryError(Reason.INTERNAL, f"internal error ({exc.__class__.__name__})"))
        return results
