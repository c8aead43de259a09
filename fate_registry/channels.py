"""What every gRPC channel and call of the registry shares: message limits, metadata keys, and the
one function that opens a channel, in plain text or TLS as the program's ``tls`` conf says."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc

from fate_registry.config import PLAINTEXT, TlsConf
from fate_registry.errors import Reason, RegistryError

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# gRPC waits up to 120 s between reconnection attempts after a peer went away, failing every call
# meanwhile: a restarted agent (or coordinator) would stay unreachable for minutes. One second at most.
MAX_RECONNECT_BACKOFF_MS = 1000
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # A peer that went away (an agent or a coordinator replica restarting) is tried again at least every
    # second, not after gRPC's default backoff of up to two minutes: calls with deadlines of a few seconds
    # reach it as soon as it is back.
    ("grpc.initial_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
    ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
)
# The coordinator's operation id, on every call it makes to an agent.
OPERATION_ID_KEY = "x-operation-id"
# A one-hop transfer's ticket, issued by the coordinator and presented to an agent by a client.
TICKET_KEY = "x-transfer-ticket"


def read_pem(path: Path, what: str) -> bytes:
    """A PEM file named by a ``tls`` conf, or an error naming the file (never its content)."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise RegistryError(
            Reason.INVALID_ARGUMENT, f"cannot read the TLS {what} {path}: {exc.strerror or exc.__class__.__name__}"
        ) from None


def open_channel(
    address: str, tls: TlsConf = PLAINTEXT, options: Sequence[tuple[str, int | str]] = CHANNEL_OPTIONS
) -> grpc.Channel:
    """A channel to ``address``: plain text when ``tls`` is off; else TLS verifying the server against
    ``tls.ca`` (the system's roots when unset) and presenting ``tls.cert`` when set (mutual TLS)."""
    if not tls.enabled:
        return grpc.insecure_channel(address, options=list(options))
    credentials = grpc.ssl_channel_credentials(
        root_certificates=read_pem(tls.ca, "ca") if tls.ca else None,
        private_key=read_pem(tls.key, "key") if tls.key else None,
        certificate_chain=read_pem(tls.cert, "cert") if tls.cert else None,
    )
    return grpc.secure_channel(address, credentials, options=list(options))


def never_connected(exc: grpc.RpcError) -> bool:
    """gRPC's own wording when no connection to the server could be made: the call was not sent, so sending
    it again is safe whatever it does."""
    details = exc.details() or ""
    return exc.code() == grpc.StatusCode.UNAVAILABLE and "failed to connect to all addresses" in details
