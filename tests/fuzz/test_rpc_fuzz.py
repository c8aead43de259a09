"""Every RPC of the coordinator's API, with hostile requests, against a federation of real processes.

Each case sends one generated request (every field drawn from hostile strings, big numbers, empty
and missing values, plus the ids of a real model) and checks the oracles: an answer or a clean
status with a reason, and never an internal error. After each test the servers must still be
serving and no file may have appeared outside the model cache.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fate_registry.v1 import registry_pb2
from fate_registry.v1.registry_pb2 import ImportModelRequest
from tests.fuzz.conftest import FUZZ, Fuzzed, count
from tests.fuzz.oracles import check_status
from tests.fuzz.strategies import messages, nasty_text

SERVICE = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"]
PREFIX = f"/{SERVICE.full_name}/"
CASES_PER_RPC = 250
CALL_TIMEOUT = 60.0
UNARY = sorted(m.name for m in SERVICE.methods if not m.client_streaming and not m.server_streaming)


def _unary(fuzzed: Fuzzed, method: str) -> grpc.UnaryUnaryMultiCallable[bytes, bytes]:
    channel: grpc.Channel = fuzzed.client._channel
    return channel.unary_unary(PREFIX + method, request_serializer=None, response_deserializer=None)


def test_every_rpc_is_fuzzed() -> None:
    streaming = {m.name for m in SERVICE.methods} - set(UNARY)
    assert streaming == {"ImportModel", "ExportModel"}, streaming  # each has its own test below


@pytest.mark.parametrize("method", UNARY)
def test_unary_rpc(fuzzed: Fuzzed, method: str) -> None:
    descriptor = SERVICE.methods_by_name[method].input_type
    call = _unary(fuzzed, method)

    @settings(FUZZ, max_examples=CASES_PER_RPC)
    @given(request=messages(descriptor, nasty_text(fuzzed.known)))
    def case(request: object) -> None:
        count(f"rpc:{method}")
        try:
            call(request.SerializeToString(), timeout=CALL_TIMEOUT)  # type: ignore[attr-defined]
        except grpc.RpcError as error:
            check_status(error, method)

    case()
    fuzzed.check_after()


def test_import_model_stream(fuzzed: Fuzzed) -> None:
    channel: grpc.Channel = fuzzed.client._channel
    call = channel.stream_unary(PREFIX + "ImportModel", request_serializer=None, response_deserializer=None)
    text = nasty_text(fuzzed.known)

    @settings(FUZZ, max_examples=CASES_PER_RPC)
    @given(
        first=messages(ImportModelRequest.DESCRIPTOR, text),
        chunks=st.lists(st.binary(max_size=512), max_size=4),
    )
    def case(first: ImportModelRequest, chunks: list[bytes]) -> None:
        count("rpc:ImportModel")

        def stream() -> Iterator[bytes]:
            yield first.SerializeToString()
            for chunk in chunks:
                yield ImportModelRequest(chunk=chunk).SerializeToString()

        try:
            call(stream(), timeout=CALL_TIMEOUT)
        except grpc.RpcError as error:
            check_status(error, "ImportModel")

    case()
    fuzzed.check_after()


def test_export_model_stream(fuzzed: Fuzzed) -> None:
    channel: grpc.Channel = fuzzed.client._channel
    call = channel.unary_stream(PREFIX + "ExportModel", request_serializer=None, response_deserializer=None)

    @settings(FUZZ, max_examples=CASES_PER_RPC)
    @given(request=messages(registry_pb2.ExportModelRequest.DESCRIPTOR, nasty_text(fuzzed.known)))
    def case(request: registry_pb2.ExportModelRequest) -> None:
        count("rpc:ExportModel")
        try:
            for _ in call(request.SerializeToString(), timeout=CALL_TIMEOUT):
                pass
        except grpc.RpcError as error:
            check_status(error, "ExportModel")

    case()
    fuzzed.check_after()
