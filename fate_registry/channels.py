"""What every gRPC channel and call of the registry shares: message limits and metadata keys."""

from __future__ import annotations

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # A peer that went away (an agent or a coordinator replica restarting) is tried again at least every
    # second, not after gRPC's default backoff of up to two minutes: calls with deadlines of a few seconds
    # reach it as soon as it is back.
    ("grpc.max_reconnect_backoff_ms", 1000),
)
# The coordinator's operation id, on every call it makes to an agent.
OPERATION_ID_KEY = "x-operation-id"
# A one-hop transfer's ticket, issued by the coordinator and presented to an agent by a client.
TICKET_KEY = "x-transfer-ticket"
