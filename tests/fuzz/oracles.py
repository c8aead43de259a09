"""What every fuzz case must hold: a clean gRPC status or answer, healthy servers, no file outside the model cache."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from fate_registry.errors import DOMAIN, Reason
from fate_registry.health import is_serving
from tests.fuzz.strategies import ESCAPE_MARKER

# Python leaking into a message: a traceback, an object repr, an exception's repr, a module path.
_LEAKS = (
    re.compile(r"Traceback \(most recent call last\)"),
    re.compile(r"<[\w.]+ object at 0x[0-9a-f]+>"),
    re.compile(r"\b[A-Z]\w*(?:Error|Exception|Exit|Interrupt)\("),
    re.compile(r'File "[^"]+\.py", line \d+'),
    re.compile(r"password\s*[:=]", re.IGNORECASE),
)
# Codes a request, however bad, must never produce: they mean the server did not expect it.
_BUG_CODES = (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)


def check_text(text: str, what: str) -> None:
    """No traceback, Python repr or secret in ``text`` (a status message, a CLI answer)."""
    for leak in _LEAKS:
        found = leak.search(text)
        assert found is None, f"{what} leaks {found.group(0)!r}: {text[:500]!r}"


def check_status(error: grpc.RpcError, method: str) -> Reason:
    """A failed call ended with a status our servers chose: a code, a reason, a clean message."""
    call: grpc.Call = error  # type: ignore[assignment]
    code, details = call.code(), call.details() or ""
    assert code not in _BUG_CODES, f"{method}: {code.name}: {details[:500]!r}"
    status = rpc_status.from_call(call)
    assert status is not None, f"{method}: {code.name} without a rich status: {details[:500]!r}"
    infos = [d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    assert len(infos) == 1, f"{method}: {code.name} without one ErrorInfo: {details[:500]!r}"
    info = error_details_pb2.ErrorInfo()
    infos[0].Unpack(info)
    assert info.domain == DOMAIN and info.reason in Reason.__members__, f"{method}: foreign reason {info}"
    reason = Reason[info.reason]
    assert reason is not Reason.INTERNAL, f"{method}: internal error: {details[:500]!r}"
    assert reason.code == code, f"{method}: reason {reason.name} with code {code.name}"
    assert info.metadata.get("retcode", "").lstrip("-").isdigit(), f"{method}: no retcode in {info}"
    assert details.strip(), f"{method}: {code.name} with an empty message"
    check_text(details, method)
    return reason


def assert_serving(*addresses: str) -> None:
    for address in addresses:
        assert is_serving(address, timeout=10.0), f"the server at {address} stopped answering"


# Files: nothing may appear outside the model cache ------------------------------------------------

# Files the servers keep and may create or grow at any time, which no request names.
_STATE_SUFFIXES = (".db", ".db-wal", ".db-shm", ".db-journal")
MODEL_CACHE = "model_local_cache"
STAGING_DIRS = (".staging", ".trash")


@dataclass(frozen=True)
class TreeSnapshot:
    """Every path under a root, except inside model caches' version directories and the servers' own state files."""

    paths: frozenset[str]

    @classmethod
    def take(cls, root: Path) -> TreeSnapshot:
        found = set()
        for path in root.rglob("*"):
            rel = path.relative_to(root)
            parts = rel.parts
            if MODEL_CACHE in parts:
                inside = parts[parts.index(MODEL_CACHE) + 1 :]
                # the cache's own top level (one directory per party model id) and the staging dirs' content
                # are watched; what a version directory holds is the model's business
                if len(inside) > 1 and inside[0] not in STAGING_DIRS:
                    continue
            if rel.name.endswith(_STATE_SUFFIXES):
                continue
            found.add(rel.as_posix())
        return cls(frozenset(found))

    def new_since(self, before: TreeSnapshot) -> set[str]:
        return set(self.paths - before.paths)


def escaped_files(trees: Iterable[Path], directories: Iterable[Path]) -> list[Path]:
    """Paths whose name carries the fuzz's escape marker: anywhere under ``trees``, or directly in ``directories``."""
    pattern = f"*{ESCAPE_MARKER}*"
    found = [p for root in trees if root.exists() for p in root.rglob(pattern)]
    return found + [p for directory in directories if directory.exists() for p in directory.glob(pattern)]
