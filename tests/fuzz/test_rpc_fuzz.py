"""Every RPC of the coordinator's API, and of the agent's, with hostile requests, against real processes.

Each case sends one generated request (every field drawn from hostile strings, big numbers, empty
and missing values, plus the ids of a real model) and checks the oracles: an answer or a clean
status with a reason, and never an internal error. After each test the servers must still be
serving and no file may have appeared outside the model cache.

The agent's API is fuzzed too: without mutual TLS a client reaches an agent directly (one-hop
transfers), so it meets hostile input first-hand as well.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from fate_registry.agent.v1 import agent_pb2
from fate_registry.channels import CHANNEL_OPTIONS
from fate_registry.v1 import registry_pb2
from tests.fuzz.conftest import FUZZ, Fuzzed, count
from tests.fuzz.oracles import check_status
from tests.fuzz.strategies import messages, nasty_text

REGISTRY = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"]
AGENT = agent_pb2.DESCRIPTOR.services_by_name["PartyAgentService"]
CASES_PER_RPC = 250
CASES_PER_AGENT_RPC = 60
CALL_TIMEOUT = 60.0
AGENT_PARTY = "10000"


def unary_methods(service: ServiceDescriptor) -> list[str]:
    return sorted(m.name for m in service.methods if not m.client_streaming and not m.server_streaming)


def _path(service: ServiceDescriptor, method: str) -> str:
    return f"/{service.full_name}/{method}"


def fuzz_unary(
    channel: grpc.Channel, service: ServiceDescriptor, method: MethodDescriptor, fuzzed: Fuzzed, cases: int
) -> None:
    call = channel.unary_unary(_path(service, method.name), request_serializer=None, response_deserializer=None)
    label = f"{'agent' if service is AGENT else 'rpc'}:{method.name}"

    @settings(FUZZ, max_examples=cases)
    @given(request=messages(method.input_type, nasty_text(fuzzed.known)))
    def case(request: Message) -> None:
        try:
            call(request.SerializeToString(), timeout=CALL_TIMEOUT)
        except grpc.RpcError as error:
            count(label, check_status(error, method.name).name)
        else:
            count(label, "ok")

    case()
    fuzzed.check_after()


def test_every_rpc_is_fuzzed() -> None:
    for service in (REGISTRY, AGENT):
        streaming = {m.name for m in service.methods} - set(unary_methods(service))
        assert streaming == {"ImportModel", "ExportModel"}, streaming  # each has its own test below


@pytest.mark.parametrize("method", unary_methods(REGISTRY))
def test_coordinator_rpc(fuzzed: Fuzzed, method: str) -> None:
    fuzz_unary(fuzzed.client._channel, REGISTRY, REGISTRY.methods_by_name[method], fuzzed, CASES_PER_RPC)


@pytest.mark.parametrize("method", unary_methods(AGENT))
def test_agent_rpc(fuzzed: Fuzzed, method: str) -> None:
    with grpc.insecure_channel(fuzzed.federation.agent_address(AGENT_PARTY), options=CHANNEL_OPTIONS) as channel:
        fuzz_unary(channel, AGENT, AGENT.methods_by_name[method], fuzzed, CASES_PER_AGENT_RPC)


@pytest.mark.parametrize("service", [REGISTRY, AGENT], ids=["coordinator", "agent"])
def test_import_model_stream(fuzzed: Fuzzed, service: ServiceDescriptor) -> None:
    address = fuzzed.federation.address if service is REGISTRY else fuzzed.federation.agent_address(AGENT_PARTY)
    request_type = registry_pb2.ImportModelRequest if service is REGISTRY else agent_pb2.ImportModelRequest
    label = f"{'agent' if service is AGENT else 'rpc'}:ImportModel"

    @settings(FUZZ, max_examples=CASES_PER_RPC)
    @given(
        first=messages(request_type.DESCRIPTOR, nasty_text(fuzzed.known)),
        chunks=st.lists(st.binary(max_size=512), max_size=4),
        ticket=st.one_of(st.none(), nasty_text()),
    )
    def case(first: Message, chunks: list[bytes], ticket: str | None) -> None:
        def stream() -> Iterator[bytes]:
            yield first.SerializeToString()
            for chunk in chunks:
                yield request_type(chunk=chunk).SerializeToString()

        try:
            call(stream(), timeout=CALL_TIMEOUT, metadata=_ticket(ticket))
        except grpc.RpcError as error:
            count(label, check_status(error, "ImportModel").name)
        else:
            count(label, "ok")

    with grpc.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        call = channel.stream_unary(_path(service, "ImportModel"), request_serializer=None, response_deserializer=None)
        case()
    fuzzed.check_after()


@pytest.mark.parametrize("service", [REGISTRY, AGENT], ids=["coordinator", "agent"])
def test_export_model_stream(fuzzed: Fuzzed, service: ServiceDescriptor) -> None:
    address = fuzzed.federation.address if service is REGISTRY else fuzzed.federation.agent_address(AGENT_PARTY)
    request_type = registry_pb2.ExportModelRequest if service is REGISTRY else agent_pb2.ExportModelRequest
    label = f"{'agent' if service is AGENT else 'rpc'}:ExportModel"

    @settings(FUZZ, max_examples=CASES_PER_RPC)
    @given(
        request=messages(request_type.DESCRIPTOR, nasty_text(fuzzed.known)), ticket=st.one_of(st.none(), nasty_text())
    )
    def case(request: Message, ticket: str | None) -> None:
        try:
            for _ in call(request.SerializeToString(), timeout=CALL_TIMEOUT, metadata=_ticket(ticket)):
                pass
        except grpc.RpcError as error:
            count(label, check_status(error, "ExportModel").name)
        else:
            count(label, "ok")

    with grpc.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        call = channel.unary_stream(_path(service, "ExportModel"), request_serializer=None, response_deserializer=None)
        case()
    fuzzed.check_after()


def _ticket(ticket: str | None) -> tuple[tuple[str, str], ...] | None:
    """A transfer ticket in the call's metadata; gRPC metadata values are printable ASCII only."""
    if ticket is None:
        return None
    return (("x-transfer-ticket", "".join(c for c in ticket if " " <= c <= "~")[:4096]),)
