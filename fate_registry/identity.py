"""FATE's model identity: model_id, party_model_id, model_version, and the names that reach paths."""

from __future__ import annotations

import datetime
import re
import threading
from collections.abc import Iterable, Mapping, Sequence

from fate_registry.errors import Reason, RegistryError

MAX_NAME_LENGTH = 255
_FORBIDDEN = re.compile(r"[/\\\x00-\x1f\x7f]")

PartyId = int | str
RoleMap = Mapping[str, Sequence[PartyId]]


def validate_name(value: str, what: str) -> str:
    """Check that ``value`` can be one path component: no separators, ``..``, NUL or control chars."""
    if not isinstance(value, str) or not value:
        raise RegistryError(Reason.INVALID_ID, f"{what} must be a non-empty string", {"field": what})
    if len(value) > MAX_NAME_LENGTH:
        raise RegistryError(
            Reason.INVALID_ID,
            f"{what} is {len(value)} characters long; at most {MAX_NAME_LENGTH} are allowed",
            {"field": what},
        )
    if value in (".", "..") or ".." in value or _FORBIDDEN.search(value):
        raise RegistryError(
            Reason.INVALID_ID,
            f"{what} {value!r} contains '/', '\\', '..' or a control character",
            {"field": what},
        )
    return value


def _sorted_ids(ids: Iterable[PartyId]) -> list[str]:
    """FATE sorts the unique ids in their own type: ints numerically, strings lexicographically."""
    unique = set(ids)
    if all(isinstance(i, int) for i in unique):
        return [str(i) for i in sorted(unique, key=int)]
    return sorted(str(i) for i in unique)


def typed_ids(ids: Iterable[PartyId]) -> list[PartyId]:
    """Party ids as FATE would have them from a JSON conf: numeric strings become ints, so that
    :func:`gen_model_id` sorts ``["99", "100"]`` as FATE sorts ``[99, 100]``."""
    return [int(i) if isinstance(i, str) and i.isdigit() else i for i in ids]


def gen_model_id(roles: RoleMap) -> str:
    """``arbiter-10000#guest-9999#host-10000#model`` from ``{"guest": [9999], ...}``."""
    if not roles:
        return "all#model"
    tokens = [f"{role}-{'_'.join(_sorted_ids(roles[role]))}" for role in sorted(roles)]
    return "#".join(tokens) + "#model"


def party_model_id(role: str, party_id: PartyId, model_id: str) -> str:
    return f"{role}#{party_id}#{model_id}"


def parse_party_model_id(value: str) -> tuple[str, str, str]:
    """Split ``role#party_id#model_id`` on the first two ``#``."""
    parts = value.split("#", 2)
    if len(parts) != 3 or not all(parts):
        raise RegistryError(Reason.INVALID_ID, f"{value!r} is not a party model id (role#party_id#model_id)")
    return parts[0], parts[1], parts[2]


def archive_name(party_model: str, model_version: str) -> str:
    """FATE's export file name: ``<party_model_id>_<model_version>.zip``."""
    return f"{party_model}_{model_version}.zip"


class JobIdGenerator:
    """FATE's job id: ``%Y%m%d%H%M%S%f`` plus a counter, strictly increasing within a process.

    FATE's own generator can repeat across processes; callers that need global uniqueness
    (the coordinator) additionally reserve each id in their database.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_stamp = ""
        self._counter = 0

    def next(self) -> str:
        with self._lock:
            stamp = datetime.datetime.now().strftime("%Y%m%d%H%M%S%f")
            if stamp <= self._last_stamp:
                stamp = self._last_stamp
                self._counter += 1
            else:
                self._last_stamp = stamp
                self._counter = 0
            return f"{stamp}{self._counter}"


job_ids = JobIdGenerator()
