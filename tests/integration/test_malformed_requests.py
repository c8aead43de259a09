"""Garbage on the wire: requests that are not the protobuf their method takes.

A coordinator and an agent, each its own process (:class:`Cluster`, loopback), are sent 200 malformed
messages on each of several methods over a raw channel: unary calls, a server stream (ExportModel),
the import's client stream (whose handler takes raw bytes and parses the first message itself),
FATE's ModelService, the proxy's Packet entry, and a well-formed Packet carrying a malformed call.

Every call is answered INVALID_ARGUMENT saying which method's request did not parse. Each server's
log holds no traceback and at most a couple of lines per method about it, each naming the method and
the caller, however many calls there were; the servers go on serving.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from fate_registry import packets
from fate_registry.errors import Reason, RegistryError, from_rpc_error
from fate_registry.fate import proxy_pb2
from fate_registry.v1 import registry_pb2 as pb
from tests.support.cluster import COORDINATOR, Cluster, agent_name

GARBAGE = b"\xff\xff\xff"
CALLS = 200
PARTY = "9999"
REGISTRY = "/fate_registry.v1.RegistryService/"
AGENT = "/fate_registry.agent.v1.PartyAgentService/"
FATE_MODEL_SERVICE = "/com.webank.ai.fate.api.mlmodel.manager.ModelService/"
# Lines a server may write about one method's flood: one, and one more if the flood outlasts the rate limit.
LINES_PER_METHOD = 2

Call = Callable[[grpc.Channel, str], None]


def _unary(channel: grpc.Channel, method: str) -> None:
    channel.unary_unary(method, request_serializer=None, response_deserializer=None)(GARBAGE, timeout=10)


def _server_stream(channel: grpc.Channel, method: str) -> None:
    for _ in channel.unary_stream(method, request_serializer=None, response_deserializer=None)(GARBAGE, timeout=10):
        pass


def _client_stream(channel: grpc.Channel, method: str) -> None:
    def messages() -> Iterator[bytes]:
        yield GARBAGE
        yield GARBAGE

    channel.stream_unary(method, request_serializer=None, response_deserializer=None)(messages(), timeout=10)


def _packet_with_garbage(channel: grpc.Channel, method: str) -> None:
    """A well-formed Packet whose call is malformed: its answer Packet carries the status."""
    packet = packets.request_packet("10000", PARTY, method, packets.RUN, {}, 10_000, value=GARBAGE)
    answer = channel.unary_unary(
        packets.UNARY_CALL,
        request_serializer=proxy_pb2.Packet.SerializeToString,
        response_deserializer=proxy_pb2.Packet.FromString,
    )(packet, timeout=10)
    error = packets.failure_of(answer)
    assert error is not None, "a malformed call in a Packet was answered as a success"
    raise error


COORDINATOR_CALLS: list[tuple[Call, str]] = [
    (_unary, REGISTRY + "GetModelInfo"),
    (_unary, REGISTRY + "DeployModel"),
    (_server_stream, REGISTRY + "ExportModel"),
    (_client_stream, REGISTRY + "ImportModel"),
]
AGENT_CALLS: list[tuple[Call, str]] = [
    (_unary, AGENT + "GetModelInfo"),
    (_client_stream, AGENT + "ImportModel"),
    (_unary, FATE_MODEL_SERVICE + "queryModel"),
    (_unary, packets.UNARY_CALL),
    (_packet_with_garbage, AGENT + "LoadModel"),
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster.start(tmp_path_factory.mktemp("malformed"), {PARTY: {}}) as started:
        yield started


def _answer(call: Call, channel: grpc.Channel, method: str) -> RegistryError:
    try:
        call(channel, method)
    except grpc.RpcError as exc:
        return from_rpc_error(exc)
    except RegistryError as exc:  # what an answer Packet carried
        return exc
    raise AssertionError(f"{method}: a malformed request was answered as a success")


def _flood(address: str, calls: list[tuple[Call, str]]) -> None:
    """CALLS malformed requests to each method; every one answered INVALID_ARGUMENT naming the method."""
    with grpc.insecure_channel(address) as channel:
        for call, method in calls:
            name = method.rsplit("/", 1)[-1]
            for _ in range(CALLS):
                error = _answer(call, channel, method)
                assert error.reason is Reason.INVALID_ARGUMENT, f"{method}: {error.reason.name}: {error}"
                assert error.fate_retcode == 101
                assert name in error.message and "does not parse" in error.message, error.message


def _log_after(path: Path, offset: int) -> str:
    return path.read_bytes()[offset:].decode("utf-8", "replace")


@pytest.mark.parametrize(("name", "calls"), [(COORDINATOR, COORDINATOR_CALLS), (agent_name(PARTY), AGENT_CALLS)])
def test_a_flood_of_malformed_requests_is_refused_and_logged_in_a_few_lines(
    cluster: Cluster, name: str, calls: list[tuple[Call, str]]
) -> None:
    log_path = cluster.log_path(name)
    before = log_path.stat().st_size
    _flood(cluster.address_of(name), calls)
    written = _log_after(log_path, before)
    lines = [line for line in written.splitlines() if "malformed" in line]
    print(f"{name}: {len(calls) * CALLS} malformed calls wrote {len(written)} bytes, {len(written.splitlines())} lines")
    assert "Traceback" not in written, written[:3000]
    assert len(lines) <= LINES_PER_METHOD * len(calls), "\n".join(lines)
    assert len(written.splitlines()) <= LINES_PER_METHOD * len(calls), written[:3000]
    for _, method in calls:
        named = [line for line in lines if method.rsplit("/", 1)[-1] in line]
        assert named, f"no line names {method}:\n{written}"
        assert all("127.0.0.1" in line for line in named), named
    with grpc.insecure_channel(cluster.address) as channel:  # the coordinator still answers well-formed calls
        answer = channel.unary_unary(
            REGISTRY + "ListOperations",
            request_serializer=pb.ListOperationsRequest.SerializeToString,
            response_deserializer=pb.ListOperationsResponse.FromString,
        )(pb.ListOperationsRequest(), timeout=10)
    assert isinstance(answer, pb.ListOperationsResponse)
