"""Migrate's role mapping: old party ids to new, by position within each role (fate_flow.md §6.8).

Both the coordinator (to refuse a bad request before any party is called) and the agents (to
rewrite buffers) use it. Party ids may be ints or strings in confs; they are compared as strings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fate_registry.errors import Reason, RegistryError, Retcode

PartyMap = dict[str, dict[str, str]]  # role -> old party id -> new party id, as strings

STRUCTURE_DIFFERS = (
    "The structure of roles data of local configuration is different from model runtime configuration's. "
    "Migration aborting."
)
NOTHING_TO_DO = (
    "The config of previous roles is the same with that of migrate roles. There is no need to migrate model. "
    "Migration process aborting."
)


def _refuse(message: str) -> RegistryError:
    return RegistryError(Reason.INVALID_ARGUMENT, message, retcode=Retcode.EXCEPTION_ERROR)


def party_map(old: Mapping[str, Sequence[int | str]], new: Mapping[str, Sequence[int | str]]) -> PartyMap:
    """FATE's checks (same role keys, lists of equal length, not identical) and the positional map."""
    if set(old) != set(new) or not all(
        isinstance(old[r], Sequence)
        and isinstance(new[r], Sequence)
        and not isinstance(old[r], str)
        and not isinstance(new[r], str)
        and len(old[r]) == len(new[r])
        for r in old
    ):
        raise _refuse(STRUCTURE_DIFFERS)
    if all({str(p) for p in old[r]} == {str(p) for p in new[r]} for r in old):
        raise _refuse(NOTHING_TO_DO)
    mapping: PartyMap = {}
    for role in old:
        pairs = mapping.setdefault(role, {})
        for before, after in zip(old[role], new[role], strict=True):
            if str(before) in pairs and pairs[str(before)] != str(after):
                raise _refuse(f"party {before} of role {role} is mapped to both {pairs[str(before)]} and {after}")
            pairs[str(before)] = str(after)
    return mapping
