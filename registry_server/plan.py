"""A two-phase operation's plan: what the coordinator logs before it acts, to finish or undo it after a stop.

Stored as JSON in the operation log (``plan_json``). Its keys on disk::

    kind            "deploy" or "migrate" (absent: a deploy)
    model_id, model_version, child
    parties         [[role, party_id], ...]: the parties that prepare, in order
    roles           deploy: the model's roles {role: [party_id, ...]}
    parent_info     deploy: {"parent_model_id": ..., "parent_model_version": ...}
    new_model_id    migrate: the model id of the new federation
    prepared        once every party prepared: {"<role>#<party_id>": {"digest", "archive", "new_party_id"}}
    outcome         once the abort is decided: each party's result [{"role", "party_id", "retcode", "retmsg", "reason"}]
    rolled_back     true when the abort was decided by a recovery (the coordinator stopped while preparing)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from fate_registry.v1.common_pb2 import PartyResult

Roles = dict[str, list[str]]
PartyKey = tuple[str, str]
"""(role, party_id)."""


class PlanKind(StrEnum):
    """The two-phase operations: FATE's deploy and migrate."""

    DEPLOY = "deploy"
    MIGRATE = "migrate"


@dataclass(frozen=True)
class Prepared:
    """What a party reports of the version it prepared."""

    digest: str = ""
    """The prepared version's manifest digest."""
    archive: str = ""
    """A migrate's archive of the rewritten slice, where the commit puts it."""
    new_party_id: str = ""
    """A migrate's party id of the rewritten slice."""


@dataclass
class Plan:
    """A two-phase operation's plan, as the operation log keeps it."""

    kind: PlanKind
    model_id: str
    model_version: str
    child: str
    """The version the operation makes: a deploy's child, a migrate's new model version."""
    parties: list[PartyKey]
    roles: Roles = field(default_factory=dict)
    parent_info: dict[str, str] = field(default_factory=dict)
    new_model_id: str = ""
    prepared: dict[PartyKey, Prepared] | None = None
    """Every party's prepared version, once all have prepared (the commit is decided)."""
    outcome: list[PartyResult] | None = None
    """Every party's result, once the abort is decided."""
    rolled_back: bool = False

    def party_ids(self) -> list[str]:
        """Each party id once, in the plan's order (a party id may play several roles)."""
        return list(dict.fromkeys(party for _, party in self.parties))

    def prepared_by(self, key: PartyKey) -> Prepared:
        return (self.prepared or {}).get(key, Prepared())

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind.value,
            "model_id": self.model_id,
            "model_version": self.model_version,
        }
        if self.kind is PlanKind.MIGRATE:
            data["new_model_id"] = self.new_model_id
        data["child"] = self.child
        if self.kind is PlanKind.DEPLOY:
            data["roles"] = self.roles
        data["parties"] = [list(key) for key in self.parties]
        if self.kind is PlanKind.DEPLOY:
            data["parent_info"] = self.parent_info
        if self.prepared is not None:
            data["prepared"] = {
                f"{role}#{party}": {"digest": p.digest, "archive": p.archive, "new_party_id": p.new_party_id}
                for (role, party), p in self.prepared.items()
            }
        if self.outcome is not None:
            data["outcome"] = [result_json(r) for r in self.outcome]
        if self.rolled_back:
            data["rolled_back"] = True
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        prepared = data.get("prepared")
        outcome = data.get("outcome")
        return cls(
            kind=PlanKind(data.get("kind", PlanKind.DEPLOY.value)),
            model_id=str(data.get("model_id", "")),
            model_version=str(data.get("model_version", "")),
            child=str(data.get("child", "")),
            parties=[(str(role), str(party)) for role, party in data.get("parties", [])],
            roles={str(r): [str(p) for p in ids] for r, ids in data.get("roles", {}).items()},
            parent_info={str(k): str(v) for k, v in data.get("parent_info", {}).items()},
            new_model_id=str(data.get("new_model_id", "")),
            prepared=None if prepared is None else {_key(k): _prepared(v) for k, v in prepared.items()},
            outcome=None if outcome is None else [PartyResult(**r) for r in outcome],
            rolled_back=bool(data.get("rolled_back", False)),
        )


def _key(text: str) -> PartyKey:
    role, _, party = text.partition("#")
    return role, party


def _prepared(data: Mapping[str, Any]) -> Prepared:
    return Prepared(
        digest=str(data.get("digest", "")),
        archive=str(data.get("archive", "")),
        new_party_id=str(data.get("new_party_id", "")),
    )


def result_json(result: PartyResult) -> dict[str, Any]:
    """A party's result as the operation log keeps it (its plan's outcome, its results column)."""
    return {
        "role": result.role,
        "party_id": result.party_id,
        "retcode": result.retcode,
        "retmsg": result.retmsg,
        "reason": result.reason,
    }
