"""Who may call what: the authorisation interceptors of the coordinator and the agents (DESIGN §5.7, §9).

With mutual TLS the handshake proves that a caller holds a certificate signed by the trusted CA;
a caller without one, or with one from another CA, never gets a call through (the client sees
UNAVAILABLE). These interceptors then decide from the names in the caller's certificate — its
subject CN and its SAN entries:

- :class:`CallerAllowList` admits a call to the program's API only from a caller named in its
  ``tls.allow`` (on the coordinator: the clients; on an agent: the coordinator), else
  PERMISSION_DENIED. Some services stay open to any caller that completed the handshake (health,
  reflection), and some methods to any such caller presenting a transfer ticket the coordinator
  issued (a client's one-hop archive transfer to an agent).
- :class:`PartyGuard` (on every agent, with TLS or without) refuses every request that names a
  party id other than the agent's own, with PERMISSION_DENIED.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.message import DecodeError, Message

from fate_registry.channels import TICKET_KEY
from fate_registry.errors import Reason, RegistryError
from fate_registry.grpc_server import Behavior, HandlerInterceptor, wrap_handler
from fate_registry.v1.common_pb2 import ImportModelHeader, PartyModelRef

if TYPE_CHECKING:
    from fate_registry.grpc_server import Handler

log = logging.getLogger(__name__)
COMMON_NAME_KEY = "x509_common_name"
PEER_NAME_KEYS = (COMMON_NAME_KEY, "x509_subject_alternative_name")
HEALTH_SERVICE = "grpc.health.v1.Health"
REFLECTION_SERVICES = ("grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection")


def peer_names(context: grpc.ServicerContext) -> frozenset[str]:
    """The names the caller's verified certificate carries (subject CN, SAN entries); empty without one."""
    auth = context.auth_context()
    return frozenset(_text(value) for key in PEER_NAME_KEYS for value in auth.get(key, ()))


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _caller(context: grpc.ServicerContext, names: frozenset[str]) -> str:
    """The caller as a person reads it: its certificate's CN, else its SAN entries."""
    common = context.auth_context().get(COMMON_NAME_KEY)
    return f"CN={_text(common[0])}" if common else ", ".join(sorted(names))


def _service(method: str) -> str:
    return method.split("/")[1] if method.count("/") >= 2 else ""


def _checked(
    unary_check: Callable[[Any, grpc.ServicerContext], None],
) -> tuple[Callable[[Behavior], Behavior], Callable[[Behavior], Behavior]]:
    """Wrappers that run ``unary_check`` before a unary- or stream-response behaviour."""

    def unary(behavior: Behavior) -> Behavior:
        def run(request: Any, context: grpc.ServicerContext) -> Any:
            unary_check(request, context)
            return behavior(request, context)

        return run

    def stream(behavior: Behavior) -> Behavior:
        def run(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            unary_check(request, context)
            yield from behavior(request, context)

        return run

    return unary, stream


class CallerAllowList(HandlerInterceptor):
    """Admits a call only from a caller whose certificate names one of ``allow``."""

    def __init__(
        self,
        allow: Collection[str],
        open_services: Collection[str] = (HEALTH_SERVICE, *REFLECTION_SERVICES),
        ticketed_methods: Collection[str] = (),
    ) -> None:
        self.allow = frozenset(allow)
        self.open_services = frozenset(open_services)
        self.ticketed_methods = frozenset(ticketed_methods)

    def rewrite(self, handler: Handler, details: grpc.HandlerCallDetails) -> Handler:
        if _service(details.method) in self.open_services:
            return handler
        method = details.method
        ticketed = method in self.ticketed_methods and any(key == TICKET_KEY for key, _ in details.invocation_metadata)

        def check(request: Any, context: grpc.ServicerContext) -> None:
            names = peer_names(context)
            if not names:
                raise RegistryError(Reason.UNAUTHENTICATED, "this server requires a client certificate")
            if names & self.allow or ticketed:
                return
            who = _caller(context, names)
            log.warning("refused %s from a caller whose certificate names %s", method, who)
            raise RegistryError(
                Reason.PERMISSION_DENIED,
                f"the caller's certificate ({who}) is not allowed to call {method} (not in this server's tls.allow)",
                {"caller": who},
            )

        return wrap_handler(handler, *_checked(check))


def named_parties(request: Message) -> set[str]:
    """The party ids a request acts for: those of its top-level model references and import header."""
    found = set()
    for _, value in request.ListFields():
        if isinstance(value, PartyModelRef):
            found.add(value.party_id)
        elif isinstance(value, ImportModelHeader):
            found.add(value.target.party_id)
    return found


class PartyGuard(HandlerInterceptor):
    """Refuses every request of ``services`` that names a party id other than ``party_id`` and those
    ``hosted`` admits (the parties the agent migrated slices to, which stay in its care).

    ``raw_decoders`` parse the first message of the methods whose handlers take serialized bytes
    (the archive import, whose first message holds the header naming the target party).
    """

    def __init__(
        self,
        party_id: str,
        services: Collection[str],
        raw_decoders: Mapping[str, Callable[[bytes], Message]],
        hosted: Callable[[str], bool] = lambda party_id: False,
    ) -> None:
        self.party_id = party_id
        self.services = frozenset(services)
        self.raw_decoders = dict(raw_decoders)
        self.hosted = hosted

    def _check(self, request: Any) -> None:
        if not isinstance(request, Message):
            return
        others = sorted(p for p in named_parties(request) - {self.party_id} if not self.hosted(p))
        if others:
            raise RegistryError(
                Reason.PERMISSION_DENIED,
                f"this agent acts only for party {self.party_id}; the request names party {', '.join(others)}",
                {"party_id": self.party_id, "requested_party_id": ",".join(others)},
            )

    def _checked_stream(self, messages: Iterator[Any], decode: Callable[[bytes], Message] | None) -> Iterator[Any]:
        first = next(messages, None)
        if first is None:
            return
        if isinstance(first, bytes) and decode is not None:
            with contextlib.suppress(DecodeError):  # the servicer answers a malformed message itself
                self._check(decode(first))
        else:
            self._check(first)
        yield first
        yield from messages

    def rewrite(self, handler: Handler, details: grpc.HandlerCallDetails) -> Handler:
        if _service(details.method) not in self.services:
            return handler
        decode = self.raw_decoders.get(details.method)
        if handler.request_streaming:

            def unary(behavior: Behavior) -> Behavior:
                def run(request: Any, context: grpc.ServicerContext) -> Any:
                    return behavior(self._checked_stream(request, decode), context)

                return run

            def stream(behavior: Behavior) -> Behavior:
                def run(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                    yield from behavior(self._checked_stream(request, decode), context)

                return run

            return wrap_handler(handler, unary, stream)
        return wrap_handler(handler, *_checked(lambda request, context: self._check(request)))


@dataclass(frozen=True)
class _CallDetails:
    method: str
    invocation_metadata: tuple[tuple[str, str], ...] = ()


def guarded(interceptor: HandlerInterceptor, service: str, handlers: Mapping[str, Handler]) -> dict[str, Handler]:
    """``handlers`` (by method name) as ``interceptor`` rewrites them: for calls that reach them without a
    gRPC server's interceptors (a proxy's Packets), so the same checks apply."""
    return {
        name: interceptor.rewrite(handler, _CallDetails(f"/{service}/{name}"))  # type: ignore[arg-type]
        for name, handler in handlers.items()
    }
