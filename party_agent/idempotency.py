"""Calls the coordinator may retry are done once: the answer is remembered by operation id.

The coordinator retries a call that failed with UNAVAILABLE, and sends the same
``x-operation-id`` each time; the agent answers a repeat with the first call's answer (or error),
waiting for it if the first call is still running, so a load is counted once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")
REMEMBERED = 4096


class OnceByOperation:
    """The answers of the last ``remembered`` calls, by operation id, method and request bytes."""

    def __init__(self, remembered: int = REMEMBERED) -> None:
        self._lock = threading.Lock()
        self._answers: OrderedDict[tuple[str, str, bytes], Future[Any]] = OrderedDict()
        self._remembered = remembered

    def run(self, operation_id: str, method: str, request: bytes, call: Callable[[], T]) -> T:
        if not operation_id:
            return call()
        key = (operation_id, method, request)
        with self._lock:
            answer = self._answers.get(key)
            first = answer is None
            if answer is None:
                answer = Future()
                self._answers[key] = answer
                while len(self._answers) > self._remembered:
                    self._answers.popitem(last=False)
        if first:
            try:
                answer.set_result(call())
            except BaseException as exc:  # the repeat gets the same error
                answer.set_exception(exc)
        result: T = answer.result()
        return result
