"""What every gRPC channel and call of the registry shares: message limits and metadata keys."""

from __future__ import annotations

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# gRPC waits up to 120 s between reconnection attempts after a peer went away, failing every call
# meanwhile: a restarted agent (or coordinator) would stay unreachable for minutes. One second at most.
MAX_RECONNECT_BACKOFF_MS = 1000
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.initial_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
    ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
)
# The coordinator's operation id, on every call it makes to an agent.
OPERATION_ID_KEY = "x-operation-id"
# A one-hop transfer's ticket, issued by the coordinator and presented to an agent by a client.
TICKET_KEY = "x-transfer-ticket"
