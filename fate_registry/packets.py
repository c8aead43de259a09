"""Calls to an agent wrapped in FATE's eggroll Packet, so they can cross rollsite, nginx or OSX.

The layout follows what FATE-Flow's ``wrap_grpc_packet`` fills (fate_serving.md §4.3), with our
role names in place of ``fateflow``:

- ``header.src`` / ``header.dst``: Topic(name=operation id, partyId, role); the coordinator's
  role is :data:`COORDINATOR_ROLE`, an agent's :data:`AGENT_ROLE` (the role a route table names).
- ``header.task``: Task(taskId=operation id, model=Model(name="headers", dataKey=JSON of the
  call's gRPC metadata)), as FATE-Flow 1.9+ carries its HTTP headers.
- ``header.command.name``: the full gRPC method, e.g. ``/fate_registry.agent.v1.PartyAgentService/LoadModel``.
- ``header.operator``: an eggroll ``Operation`` name saying what the Packet does: ``RUN`` a unary
  call; for streams, ``PUT_DATA`` (one request message, ``seq`` 1, 2, …), ``GET_DATA`` (ask for
  response message ``seq``), ``STOP`` (the stream's end, ``body`` = sha256 of the messages'
  bytes), ``KILL`` (abandon the stream).
- ``header.conf``: overallTimeout and packetIntervalTimeout in milliseconds.
- ``body``: Data(key=method, value=the serialized message). An answer that is a failure has
  ``body.key`` = :data:`STATUS_KEY` and ``body.value`` = a serialized ``google.rpc.Status``
  with our ``ErrorInfo``, so the gRPC code and reason survive any proxy.
- gRPC metadata on the unaryCall: ``service``, ``src-party-id``, ``src-role``,
  ``dest-party-id``, ``dest-role`` (what nginx routes on).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from google.rpc import status_pb2

from fate_registry.errors import Reason, RegistryError, from_status_proto
from fate_registry.fate import proxy_pb2

COORDINATOR_ROLE = "fate_registry"
AGENT_ROLE = "fate_registry_agent"
HEADERS_MODEL = "headers"
STATUS_KEY = "grpc-status"
DIGEST_KEY = "sha256"
STREAM_ID_KEY = "x-stream-id"
UNARY_CALL = "/com.webank.ai.eggroll.api.networking.proxy.DataTransferService/unaryCall"

RUN = proxy_pb2.Operation.Name(proxy_pb2.RUN)
PUT_DATA = proxy_pb2.Operation.Name(proxy_pb2.PUT_DATA)
GET_DATA = proxy_pb2.Operation.Name(proxy_pb2.GET_DATA)
STOP = proxy_pb2.Operation.Name(proxy_pb2.STOP)
KILL = proxy_pb2.Operation.Name(proxy_pb2.KILL)


def routing_metadata(src_party: str, dst_party: str) -> tuple[tuple[str, str], ...]:
    """The gRPC metadata FATE-Flow's ``gen_routing_metadata`` sets, with our service and roles."""
    return (
        ("service", AGENT_ROLE),
        ("src-party-id", src_party),
        ("src-role", COORDINATOR_ROLE),
        ("dest-party-id", dst_party),
        ("dest-role", AGENT_ROLE),
    )


def request_packet(
    src_party: str,
    dst_party: str,
    method: str,
    operator: str,
    headers: Mapping[str, str],
    timeout_ms: int,
    *,
    value: bytes = b"",
    seq: int = 0,
    key: str = "",
) -> proxy_pb2.Packet:
    operation_id = headers.get("x-operation-id", "")
    header = proxy_pb2.Metadata(
        task=proxy_pb2.Task(
            taskId=operation_id,
            model=proxy_pb2.Model(name=HEADERS_MODEL, dataKey=json.dumps(dict(headers))),
        ),
        src=proxy_pb2.Topic(name=operation_id, partyId=src_party, role=COORDINATOR_ROLE),
        dst=proxy_pb2.Topic(name=operation_id, partyId=dst_party, role=AGENT_ROLE),
        command=proxy_pb2.Command(name=method),
        operator=operator,
        seq=seq,
        conf=proxy_pb2.Conf(overallTimeout=timeout_ms, packetIntervalTimeout=timeout_ms),
    )
    return proxy_pb2.Packet(header=header, body=proxy_pb2.Data(key=key or method, value=value))


def headers_of(packet: proxy_pb2.Packet) -> dict[str, str]:
    """The call metadata a Packet carries in ``task.model`` (empty when it carries none)."""
    model = packet.header.task.model
    if model.name != HEADERS_MODEL or not model.dataKey:
        return {}
    try:
        loaded = json.loads(model.dataKey)
    except ValueError:
        raise RegistryError(Reason.INVALID_ARGUMENT, "the Packet's task.model.dataKey is not JSON") from None
    if not isinstance(loaded, dict):
        return {}
    return {str(k): str(v) for k, v in loaded.items()}


def answer_packet(request: proxy_pb2.Packet, value: bytes, *, key: str = "", operator: str = "") -> proxy_pb2.Packet:
    """The answer to ``request``: src and dst swapped (as FATE-Flow's receiver does), same task and seq."""
    header = proxy_pb2.Metadata()
    header.CopyFrom(request.header)
    header.src.CopyFrom(request.header.dst)
    header.dst.CopyFrom(request.header.src)
    header.operator = operator or request.header.operator
    return proxy_pb2.Packet(header=header, body=proxy_pb2.Data(key=key or request.body.key, value=value))


def failure_packet(request: proxy_pb2.Packet, error: RegistryError) -> proxy_pb2.Packet:
    return answer_packet(request, error.to_status_proto().SerializeToString(), key=STATUS_KEY)


def failure_of(answer: proxy_pb2.Packet) -> RegistryError | None:
    """The error an answer Packet carries, or None when it is a success."""
    if answer.body.key != STATUS_KEY:
        return None
    status = status_pb2.Status.FromString(answer.body.value)
    found = from_status_proto(status)
    if found is not None:
        return found
    return RegistryError(Reason.INTERNAL, status.message or "the party failed without a reason")
