"""Requests that do not parse as the message their method takes: refused with INVALID_ARGUMENT, and
logged in a bounded number of lines however many arrive.

gRPC-python parses each request with its handler's deserializer; when that raises, gRPC logs the
exception with its traceback ("Exception deserializing message!", logger ``grpc._common``) and
answers INTERNAL, once per call, so a client sending garbage could fill the server's disk. The error
interceptor (:mod:`fate_registry.grpc_server`) therefore serves every handler with a :func:`tolerant`
deserializer: what does not parse arrives as a :class:`MalformedRequest` in place of the message, and
is raised before the handler runs (:func:`screened`). Handlers that take raw bytes parse them with
:func:`parse`, which raises the same. :func:`refusal` makes it the caller's INVALID_ARGUMENT and logs
it, naming the method and the peer, in at most one line per method every :data:`LOG_INTERVAL` seconds;
the next line says how many were left out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from google.protobuf.message import DecodeError

from fate_registry.errors import Reason, RegistryError

log = logging.getLogger(__name__)
T = TypeVar("T")
LOG_INTERVAL = 10.0
MAX_DETAIL = 200  # characters of the parser's complaint kept
MAX_PEER = 100


class MalformedRequest(Exception):
    """A request of ``size`` bytes that does not parse; ``detail`` is the parser's complaint."""

    def __init__(self, size: int, detail: str) -> None:
        super().__init__(f"{size} bytes that do not parse: {detail}")
        self.size = size
        self.detail = detail


def parse(deserializer: Callable[[bytes], T], data: bytes) -> T:
    """``data`` as ``deserializer`` reads it; :class:`MalformedRequest` when it cannot."""
    try:
        return deserializer(data)
    except Exception as exc:  # whatever the parser raises, the bytes are not the message
        detail = str(exc) if isinstance(exc, DecodeError) else exc.__class__.__name__
        raise MalformedRequest(len(data), _printable(detail, MAX_DETAIL)) from None


def tolerant(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """``deserializer`` returning a :class:`MalformedRequest` instead of raising it (which gRPC would log)."""

    def deserialize(data: bytes) -> Any:
        try:
            return parse(deserializer, data)
        except MalformedRequest as malformed:
            return malformed

    return deserialize


def screened(request: Any, streaming: bool) -> Any:
    """The request (or, if ``streaming``, the request iterator) a tolerant deserializer gave, raising
    the :class:`MalformedRequest` it holds in place of a message."""
    if not streaming:
        if isinstance(request, MalformedRequest):
            raise request
        return request
    return _screened_stream(request)


def _screened_stream(requests: Iterator[Any]) -> Iterator[Any]:
    for request in requests:
        if isinstance(request, MalformedRequest):
            raise request
        yield request


def refusal(malformed: MalformedRequest, method: str, peer: str) -> RegistryError:
    """What the caller is answered; logged (rate-limited) with the method and the peer."""
    _LOG.warning(
        method,
        f"malformed request to {method} from {_printable(peer, MAX_PEER) or 'an unknown peer'}: {malformed}"
        " (answered INVALID_ARGUMENT)",
    )
    return RegistryError(
        Reason.INVALID_ARGUMENT,
        f"the request to {method} does not parse ({malformed.size} bytes): {malformed.detail}",
        {"method": method},
    )


def _printable(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, anything unprintable (a line break) as ``?``: it goes into a log line."""
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


class RateLimitedLog:
    """At most one line per key every ``interval`` seconds; a line says how many were left out before it."""

    def __init__(self, logger: logging.Logger, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._left_out: dict[str, int] = {}

    def warning(self, key: str, message: str) -> None:
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                self._left_out[key] = self._left_out.get(key, 0) + 1
                return
            self._last[key] = now
            left_out = self._left_out.pop(key, 0)
        if left_out:
            message += f"; {left_out} more like it since the last such line were not logged"
        self._logger.warning("%s", message)


# Keyed by method: the methods a server has are few, so the bookkeeping stays small.
_LOG = RateLimitedLog(log, LOG_INTERVAL)
