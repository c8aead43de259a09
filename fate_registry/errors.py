"""One exception type for the whole registry, carrying a reason, a gRPC code and FATE's retcode.

Servers raise :class:`RegistryError`; the interceptor in :mod:`fate_registry.grpc_server` turns it
into a gRPC status with a ``google.rpc.ErrorInfo`` detail. Clients and the coordinator turn a
received status back into a :class:`RegistryError` with :func:`from_rpc_error`, so an agent's
reason and retcode reach the user unchanged.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

DOMAIN = "fate-registry"


class Retcode(enum.IntEnum):
    """FATE-Flow's retcodes, plus the HTTP-style codes FATE answers some model calls with."""

    SUCCESS = 0
    NOT_EFFECTIVE = 10
    EXCEPTION_ERROR = 100
    ARGUMENT_ERROR = 101
    DATA_ERROR = 102
    OPERATING_ERROR = 103
    FEDERATED_ERROR = 104
    CONNECTION_ERROR = 105
    RUNNING = 106
    INCOMPATIBLE_FATE_VER = 107
    PERMISSION_ERROR = 108
    AUTHENTICATION_ERROR = 109
    HTTP_BAD_REQUEST = 400
    HTTP_NOT_FOUND = 404
    HTTP_CONFLICT = 409
    SERVER_ERROR = 500


class Reason(enum.Enum):
    """Why a call failed: (gRPC status code, FATE retcode)."""

    MISSING_ARGUMENT = (grpc.StatusCode.INVALID_ARGUMENT, Retcode.ARGUMENT_ERROR)
    INVALID_ARGUMENT = (grpc.StatusCode.INVALID_ARGUMENT, Retcode.ARGUMENT_ERROR)
    INVALID_ID = (grpc.StatusCode.INVALID_ARGUMENT, Retcode.ARGUMENT_ERROR)
    UNKNOWN_PARTY = (grpc.StatusCode.INVALID_ARGUMENT, Retcode.ARGUMENT_ERROR)
    PARTY_NOT_IN_ROLE = (grpc.StatusCode.INVALID_ARGUMENT, Retcode.HTTP_BAD_REQUEST)
    BAD_ARCHIVE = (grpc.StatusCode.INVALID_ARGUMENT, Retcode.DATA_ERROR)
    ARCHIVE_TOO_LARGE = (grpc.StatusCode.RESOURCE_EXHAUSTED, Retcode.DATA_ERROR)
    MODEL_NOT_FOUND = (grpc.StatusCode.NOT_FOUND, Retcode.HTTP_NOT_FOUND)
    MODEL_EXISTS = (grpc.StatusCode.ALREADY_EXISTS, Retcode.HTTP_CONFLICT)
    DATA_LOSS = (grpc.StatusCode.DATA_LOSS, Retcode.DATA_ERROR)
    NOT_IMPLEMENTED = (grpc.StatusCode.UNIMPLEMENTED, Retcode.EXCEPTION_ERROR)
    PARTY_UNAVAILABLE = (grpc.StatusCode.UNAVAILABLE, Retcode.CONNECTION_ERROR)
    DEADLINE_EXCEEDED = (grpc.StatusCode.DEADLINE_EXCEEDED, Retcode.CONNECTION_ERROR)
    CANCELLED = (grpc.StatusCode.CANCELLED, Retcode.OPERATING_ERROR)
    PERMISSION_DENIED = (grpc.StatusCode.PERMISSION_DENIED, Retcode.PERMISSION_ERROR)
    UNAUTHENTICATED = (grpc.StatusCode.UNAUTHENTICATED, Retcode.AUTHENTICATION_ERROR)
    NO_SPACE = (grpc.StatusCode.RESOURCE_EXHAUSTED, Retcode.OPERATING_ERROR)
    INTERNAL = (grpc.StatusCode.INTERNAL, Retcode.EXCEPTION_ERROR)

    @property
    def code(self) -> grpc.StatusCode:
        return self.value[0]

    @property
    def retcode(self) -> Retcode:
        return self.value[1]


# A status without our ErrorInfo (a transport failure, another server) maps to a reason by code.
_REASON_BY_CODE: dict[grpc.StatusCode, Reason] = {
    grpc.StatusCode.UNAVAILABLE: Reason.PARTY_UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: Reason.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED: Reason.CANCELLED,
    grpc.StatusCode.UNIMPLEMENTED: Reason.NOT_IMPLEMENTED,
    grpc.StatusCode.PERMISSION_DENIED: Reason.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED: Reason.UNAUTHENTICATED,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Reason.ARCHIVE_TOO_LARGE,
    grpc.StatusCode.INVALID_ARGUMENT: Reason.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND: Reason.MODEL_NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS: Reason.MODEL_EXISTS,
    grpc.StatusCode.DATA_LOSS: Reason.DATA_LOSS,
}


@dataclass(eq=False)
class RegistryError(Exception):
    """A failure the user can act on: ``message`` says what is wrong, ``reason`` classifies it."""

    reason: Reason
    message: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    retcode: int | None = None

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    @property
    def fate_retcode(self) -> int:
        return int(self.retcode if self.retcode is not None else self.reason.retcode)

    def to_status_proto(self) -> status_pb2.Status:
        """The ``google.rpc.Status`` with our ``ErrorInfo``: what a status or a proxy Packet carries."""
        info = error_details_pb2.ErrorInfo(
            reason=self.reason.name,
            domain=DOMAIN,
            metadata={**self.metadata, "retcode": str(self.fate_retcode)},
        )
        status = status_pb2.Status(code=_code_number(self.reason.code), message=self.message)
        status.details.add().Pack(info)
        return status

    def to_status(self) -> grpc.Status:
        return rpc_status.to_status(self.to_status_proto())


def _code_number(code: grpc.StatusCode) -> int:
    number: int = code.value[0]
    assert code_pb2.Code.Name(number)  # every grpc.StatusCode has a google.rpc.Code twin
    return number


def from_rpc_error(error: grpc.RpcError, context: str = "") -> RegistryError:
    """Rebuild the :class:`RegistryError` a server sent; ``context`` prefixes transport failures."""
    call: grpc.Call = error  # type: ignore[assignment]
    status = rpc_status.from_call(call)
    found = from_status_proto(status) if status is not None else None
    if found is not None:
        return found
    code = call.code()
    reason = _REASON_BY_CODE.get(code, Reason.INTERNAL)
    details = call.details() or code.name
    message = f"{context}: {details}" if context else details
    return RegistryError(reason, message)


def from_status_proto(status: status_pb2.Status) -> RegistryError | None:
    """The :class:`RegistryError` a status carries in its ``ErrorInfo``, if it carries ours."""
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            if info.domain == DOMAIN and info.reason in Reason.__members__:
                metadata = dict(info.metadata)
                retcode = int(metadata.pop("retcode", Reason[info.reason].retcode))
                return RegistryError(Reason[info.reason], status.message, metadata, retcode)
    return None


def missing_keys(keys: list[str]) -> RegistryError:
    """FATE's wording for absent required keys."""
    return RegistryError(
        Reason.MISSING_ARGUMENT,
        f"required parameters are missing: {','.join(keys)}; ",
        {"missing": ",".join(keys)},
    )
