"""Malformed requests: parsed into a refusal, never an exception gRPC would log; logged in few lines."""

from __future__ import annotations

import logging

import pytest

from fate_registry.errors import Reason
from fate_registry.malformed import MalformedRequest, RateLimitedLog, parse, refusal, screened, tolerant
from fate_registry.v1 import registry_pb2 as pb

GARBAGE = b"\xff\xff\xff"


def test_a_tolerant_deserializer_returns_what_did_not_parse_and_the_screen_raises_it() -> None:
    deserialize = tolerant(pb.GetModelInfoRequest.FromString)
    assert deserialize(pb.GetModelInfoRequest(model_id="m").SerializeToString()) == pb.GetModelInfoRequest(model_id="m")
    malformed = deserialize(GARBAGE)
    assert isinstance(malformed, MalformedRequest) and malformed.size == len(GARBAGE)
    assert "fate_registry.v1.GetModelInfoRequest" in malformed.detail
    with pytest.raises(MalformedRequest):
        screened(malformed, streaming=False)
    stream = screened(iter([pb.GetModelInfoRequest(), malformed]), streaming=True)
    assert next(stream) == pb.GetModelInfoRequest()
    with pytest.raises(MalformedRequest):
        next(stream)


def test_the_refusal_is_invalid_argument_naming_the_method_and_logged_in_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(MalformedRequest) as raised:
        parse(pb.GetModelInfoRequest.FromString, GARBAGE)
    with caplog.at_level(logging.WARNING, logger="fate_registry.malformed"):
        error = refusal(raised.value, "UnitTestMethod", "ipv4:127.0.0.1:1\nforged line")
    assert (error.reason, error.fate_retcode) == (Reason.INVALID_ARGUMENT, 101)
    assert error.message.startswith("the request to UnitTestMethod does not parse (3 bytes): Error parsing message")
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith("malformed request to UnitTestMethod from ipv4:127.0.0.1:1?forged line: 3 bytes"), line
    assert "\n" not in line


def test_the_log_keeps_one_line_per_key_and_interval_and_counts_those_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    rate_limited = RateLimitedLog(logging.getLogger("test.malformed"), 10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.malformed"):
        for _ in range(200):
            rate_limited.warning("GetModelInfo", "bad request")
        rate_limited.warning("DeployModel", "bad request")
        now[0] += 10.0
        rate_limited.warning("GetModelInfo", "bad request")
        rate_limited.warning("GetModelInfo", "bad request")
    assert [r.getMessage() for r in caplog.records] == [
        "bad request",
        "bad request",
        "bad request; 199 more like it since the last such line were not logged",
    ]
