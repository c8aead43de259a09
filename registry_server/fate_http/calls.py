"""The coordinator's RPC methods, called in-process for an HTTP request.

The same code as a gRPC call, after the same required-field check, its exceptions turned into the :class:`RegistryError`
a gRPC caller would get.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import grpc
from google.protobuf.message import Message

from fate_registry import metrics
from fate_registry.grpc_server import as_registry_error
from registry_server.required import refuse_missing
from registry_server.servicer import RegistryServicer


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
        try:
            refuse_missing(method, request)
            return getattr(self.servicer, method)(request, self.context(peer))
        except Exception as exc:
            raise as_registry_error(exc, method, peer) from None

    def export(self, request: Message, peer: str) -> Iterator[bytes]:
        """ExportModel's serialized answers; a refusal is raised before the first (see :meth:`call`)."""
        try:
            refuse_missing("ExportModel", request)
            messages = self.servicer.export_raw(request, self.context(peer))  # type: ignore[arg-type]
            first = next(messages, None)
        except Exception as exc:
            raise as_registry_error(exc, "ExportModel", peer) from None
        return _then(first, messages, peer)

    def import_archive(self, messages: Iterator[bytes], peer: str) -> Any:
        """ImportModel over serialized requests (the header first, which the servicer checks)."""
        try:
            return self.servicer.import_raw(messages, self.context(peer))
        except Exception as exc:
            error = as_registry_error(exc, "ImportModel", peer)
            metrics.count_refusal("ImportModel", error)
            raise error from None


def _then(first: bytes | None, rest: Iterator[bytes], peer: str) -> Iterator[bytes]:
    if first is not None:
        yield first
    try:
        yield from rest
    except Exception as exc:
        raise as_registry_error(exc, "ExportModel", peer) from None
