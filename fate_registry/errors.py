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
# A status travels in trailing metadata, which gRPC clients refuse above 8 KiB (soft limit) to 16 KiB (hard).
# The message (percent-encoded, and again base64-encoded in the details) and every ErrorInfo value are cut
# to these many UTF-8 bytes, so an error that echoes a huge input reaches the caller as itself, not as
# a transport failure.
MAX_MESSAGE_BYTES = 1024
MAX_METADATA_VALUE_BYTES = 256


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


@enum.unique
class Reason(enum.Enum):
    """Why a call failed: (gRPC status code, FATE retcode).

    Each member is its own reason even where two share a code and a retcode (a plain tuple value
    would make the later one an alias of the first, and send the first one's name on the wire).
    """

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

    def __new__(cls, code: grpc.StatusCode, retcode: Retcode) -> Reason:
        member = object.__new__(cls)
        member._value_ = (len(cls.__members__), code, retcode)  # the position keeps every value distinct
        return member

    @property
    def code(self) -> grpc.StatusCode:
        code: grpc.StatusCode = self.value[1]
        return code

    @property
    def retcode(self) -> Retcode:
        retcode: Retcode = self.value[2]
        return retcode


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
        metadata = {
            _cut(k, MAX_METADATA_VALUE_BYTES): _cut(v, MAX_METADATA_VALUE_BYTES) for k, v in self.metadata.items()
        }
        info = error_details_pb2.ErrorInfo(
            reason=self.reason.name,
            domain=DOMAIN,
            metadata={**metadata, "retcode": str(self.fate_retcode)},
        )
        message = _cut(self.message, MAX_MESSAGE_BYTES)
        status = status_pb2.Status(code=_code_number(self.reason.code), message=message)
        status.details.add().Pack(info)
        return status

    def to_status(self) -> grpc.Status:
        return rpc_status.to_status(self.to_status_proto())


def _cut(text: str, limit: int) -> str:
    """``text`` shortened to at most ``limit`` UTF-8 bytes (on a character boundary), saying so when it was."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    note = f"… ({len(data)} bytes, cut)"
    return data[: limit - len(note.encode())].decode("utf-8", "ignore") + note


def _code_number(code: grpc.StatusCode) -> int:
    number: int = code.value[0]
    assert code_pb2.Code.Name(number)  # every grpc.StatusCode has a google.rpc.Code twin
    return number


CLOSED_WHILE_CONNECTING = (
    "a server that requires TLS, or a client certificate signed by a CA it trusts, closes the connection this way"
)


def tls_refusal(details: str, tls: bool) -> str:
    """What TLS did, when a transport failure's ``details`` show the handshake refused; else ``""``.

    A certificate this side cannot verify fails the handshake here ("handshake failed"). A server
    requiring a client certificate that this side lacks, or that another CA signed, completes its
    half of TLS 1.3 and then closes the socket: over TLS, "Socket closed" while connecting means that.
    """
    lowered = details.lower()
    if "handshake failed" in lowered:
        return "the TLS handshake failed: the peer's certificate is not signed by the trusted CA or does not name it"
    if tls and _closed_while_connecting(lowered):
        return (
            "the server closed the connection during the TLS handshake: it requires a client certificate "
            "signed by a CA it trusts (or it does not speak TLS)"
        )
    return ""


def _closed_while_connecting(lowered: str) -> bool:
    return "failed to connect" in lowered and "socket closed" in lowered


def from_rpc_error(error: grpc.RpcError, context: str = "", tls: bool = False) -> RegistryError:
    """Rebuild the :class:`RegistryError` a server sent; ``context`` prefixes transport failures.

    A handshake TLS refused becomes UNAUTHENTICATED (``tls``: the caller spoke TLS) with what to check.
    """
    call: grpc.Call = error  # type: ignore[assignment]
    status = rpc_status.from_call(call)
    found = from_status_proto(status) if status is not None else None
    if found is not None:
        return found
    code = call.code()
    reason = _REASON_BY_CODE.get(code, Reason.INTERNAL)
    details = call.details() or code.name
    refusal = tls_refusal(details, tls) if code == grpc.StatusCode.UNAVAILABLE else ""
    if refusal:
        reason, details = Reason.UNAUTHENTICATED, f"{refusal} ({details})"
    elif code == grpc.StatusCode.UNAVAILABLE and _closed_while_connecting(details.lower()):
        details = f"{details} ({CLOSED_WHILE_CONNECTING})"  # it may be TLS: this side cannot tell
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
