"""Is a server up? The standard gRPC health check, as launchers and test harnesses ask it."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fate_registry.channels import open_channel
from fate_registry.config import PLAINTEXT, TlsConf


def is_serving(address: str, timeout: float = 1.0, tls: TlsConf = PLAINTEXT) -> bool:
    """Whether the gRPC server at ``address`` answers its health check with SERVING (over ``tls``)."""
    with open_channel(address, tls) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.RpcError:
            return False
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)
