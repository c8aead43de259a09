"""The coordinator's RPC methods, called in-process for an HTTP request.

The same code as a gRPC call, after the same required-field check, its exceptions turned into the :class:`RegistryError`
a gRPC caller would get.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final, cast

import grpc
from google.protobuf.message import Message

from fate_registry import metrics
from fate_registry.errors import RegistryError
from fate_registry.grpc_server import as_registry_error
from registry_server.required import refuse_missing
from registry_server.servicer import RegistryServicer

HTTP_SERVICE: Final = "http"  # the service label, in the RPC metrics, of the calls that came over FATE's HTTP API
_METERS = metrics.RpcMeters()


class HttpCallContext:
    """What the RPC methods read of a gRPC call's context, for a call that came over HTTP: its caller."""

    def __init__(self, peer: str) -> None:
        self._peer = peer

    def peer(self) -> str:
        return self._peer

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    def is_active(self) -> bool:
        return True

    def time_remaining(self) -> float | None:
        return None


class Registry:
    """Calls ``servicer``'s RPC methods for the callers of the HTTP API."""

    def __init__(self, servicer: RegistryServicer) -> None:
        self.servicer = servicer

    def context(self, peer: str) -> grpc.ServicerContext:
        return cast(grpc.ServicerContext, HttpCallContext(peer))

    def call(self, method: str, request: Message, peer: str) -> Any:
        """``method`` (a RegistryService RPC) with ``request``; raises the RegistryError its caller is answered."""
        with _metered(method):
            try:
                refuse_missing(method, request)
                return getattr(self.servicer, method)(request, self.context(peer))
            except Exception as exc:
                raise as_registry_error(exc, method, peer) from None

    def export(self, request: Message, peer: str) -> Iterator[bytes]:
        """ExportModel's serialized answers; a refusal is raised before the first (see :meth:`call`)."""
        stream = self._exported(request, peer)
        first = next(stream, None)  # the refusal, if any, comes here: before an answer goes out
        return stream if first is None else itertools.chain((first,), stream)

    def _exported(self, request: Message, peer: str) -> Iterator[bytes]:
        """The export's stream, counted once it ends, fails or is dropped."""
        with _metered("ExportModel"):
            try:
                refuse_missing("ExportModel", request)
                yield from self.servicer.export_raw(request, self.context(peer))  # type: ignore[arg-type]
            except Exception as exc:
                raise as_registry_error(exc, "ExportModel", peer) from None

    def import_archive(self, messages: Iterator[bytes], peer: str) -> Any:
        """ImportModel over serialized requests (the header first, which the servicer checks)."""
        with _metered("ImportModel"):
            try:
                return self.servicer.import_raw(messages, self.context(peer))
            except Exception as exc:
                raise as_registry_error(exc, "ImportModel", peer) from None


@contextmanager
def _metered(method: str) -> Iterator[None]:
    """Count and time a call that came over HTTP as the gRPC interceptor does one over gRPC (service ``http``).

    A refused import or restore is counted among the archives refused, by its reason.
    """
    name = f"/{HTTP_SERVICE}/{method}"
    start, code = time.perf_counter(), grpc.StatusCode.UNKNOWN
    try:
        yield
        code = grpc.StatusCode.OK
    except RegistryError as error:
        code = error.reason.code
        metrics.count_refusal(method, error)
        raise
    except GeneratorExit:  # an export whose caller went away
        code = grpc.StatusCode.CANCELLED
        raise
    finally:
        _METERS.timer(name).observe(time.perf_counter() - start)
        _METERS.count(name, code.name)
