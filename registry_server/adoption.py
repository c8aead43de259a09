"""Versions the parties hold that the catalog does not know.

Above all those FATE-Flow wrote into a party's ``model_local_cache`` (it trains and deploys beside the registry), which
no import brought in.

FATE-Flow's get-model-info falls back to its local model files (fate_flow.md §6.12); the coordinator's
fallback is its parties. On a catalog miss it asks every party at once, each within ``call_timeout``,
which slices of that model version it holds (a party that cannot be reached is passed over), catalogs
them, and looks again. At its start it asks every party for all it holds and catalogs what is missing
(a catalog that lost rows gets them back); every maintenance period it asks only for what the parties
hold and have no record of (what FATE-Flow wrote meanwhile, a slice of a party that was away), which
costs a party a directory listing. A party describes a directory FATE-Flow wrote from its Pipeline and
its files' sizes, so nothing is hashed: the catalog's manifest digest of such a version stays empty
until the party hashed it on first use and a later miss or start asks it again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from fate_registry.agent.v1 import agent_pb2
from fate_registry.db import now_ms
from fate_registry.errors import RegistryError
from fate_registry.v1.common_pb2 import PartyModelInfo
from registry_server.agent_rpc import AgentRpc
from registry_server.agents import AgentClients
from registry_server.catalog import Catalog, ModelFilter
from registry_server.deletes import DELETE
from registry_server.fanout import FanOut, PartyCall
from registry_server.maintenance import Maintenance

log = logging.getLogger(__name__)
DELETE_MARGIN_MS = 10_000
"""A version whose delete ended less than this before the parties were asked may have been listed by its
party just before it deleted it: it is not catalogued on that answer (the margin covers the clocks of
coordinator replicas)."""


def _key(info: PartyModelInfo) -> tuple[str, str, str, str]:
    return info.model_id, info.model_version, info.role, info.party_id


class Adoption:
    """The catalog's lookups, made good from the parties on a miss, and kept in step with what the parties hold.

    The first is :meth:`find`, the second :meth:`start`.
    """

    def __init__(self, catalog: Catalog, agents: AgentClients, fanout: FanOut) -> None:
        self.catalog = catalog
        self.agents = agents
        self.fanout = fanout

    def find(self, where: ModelFilter) -> list[PartyModelInfo]:
        """The catalog's rows matching ``where``; on a miss, those found once the parties were asked."""
        return self.catalog.find(where) or self.adopt(where)

    def adopt(self, where: ModelFilter) -> list[PartyModelInfo]:
        """Ask every party which slices of ``where``'s model id and version it holds and catalog them.

        Every role's and party's slices, whichever ``where`` names: a version is catalogued whole. Those the catalog
        lacks are catalogued, and ``where`` is looked up again.
        """
        self._catalog(agent_pb2.ListModelsRequest(model_id=where.model_id, model_version=where.model_version))
        return self.catalog.find(where)

    def sync(self) -> None:
        """Catalog every version a party holds that the catalog lacks (the coordinator's start)."""
        self._catalog(agent_pb2.ListModelsRequest())

    def sync_unrecorded(self) -> None:
        """Catalog the versions parties hold without a record of them that the catalog lacks.

        The record is FATE-Flow's, not used yet. Every maintenance period: a party only lists its directories for it.
        """
        self._catalog(agent_pb2.ListModelsRequest(unrecorded_only=True))

    def start(self, period: float) -> Maintenance:
        """:meth:`sync` now, on a thread of its own, then :meth:`sync_unrecorded` every ``period`` seconds.

        A party that does not answer must not hold the coordinator's start up; ``stop()`` the answer to end it.
        """
        threading.Thread(target=self._first_sync, name="adoption", daemon=True).start()
        return Maintenance([self.sync_unrecorded], period)

    def _first_sync(self) -> None:
        try:
            self.sync()
        except Exception as exc:  # a database hiccup: the maintenance period finds FATE-Flow's versions
            said = exc.message if isinstance(exc, RegistryError) else exc.__class__.__name__
            log.error("cataloguing what the parties hold failed: %s", said)

    def _catalog(self, request: agent_pb2.ListModelsRequest) -> None:
        """Ask every party for its versions as ``request`` says and catalog the new or changed ones.

        Those are the ones the catalog lacks, or knows without the manifest digest the party has now.
        """
        asked_at = now_ms()
        parties = list(self.agents.conf.parties)
        timeout = self.agents.conf.coordinator.call_timeout
        answers = self.fanout.parties([PartyCall("", p, self._lister(p, request)) for p in parties], timeout)
        held: list[tuple[str, PartyModelInfo]] = []  # (the party whose agent holds it, the version)
        for party, answer in zip(parties, answers, strict=True):
            if isinstance(answer, RegistryError):
                log.debug("party %s could not say which versions it holds: %s", party, answer.message)
                continue
            # its own slices, and those of party ids outside the federation it holds (migrated to them)
            held += [(party, info) for info in answer if info.party_id == party or info.party_id not in parties]
        if not held:
            return
        known = {
            _key(row): row.manifest_digest
            for model_id in dict.fromkeys(info.model_id for _, info in held)
            for row in self.catalog.find(ModelFilter(model_id, request.model_version))
        }
        missing = [
            (party, info)
            for party, info in held
            if _key(info) not in known or (info.manifest_digest and not known[_key(info)])
        ]
        busy = {
            version
            for version in dict.fromkeys((info.model_id, info.model_version) for _, info in missing)
            if self._operated_on(*version, asked_at - DELETE_MARGIN_MS)
        }
        missing = [(party, info) for party, info in missing if (info.model_id, info.model_version) not in busy]
        if not missing:
            return
        sites = {info.party_id: party for party, info in missing if info.party_id != party}
        self.catalog.record_all([info for _, info in missing], sites)
        for party in dict.fromkeys(party for party, _ in missing):
            count = sum(1 for p, _ in missing if p == party)
            log.info("catalogued %d version slice(s) held by party %s that the catalog lacked", count, party)

    def _lister(self, party: str, request: agent_pb2.ListModelsRequest) -> Callable[[float], Sequence[PartyModelInfo]]:
        def call(timeout: float) -> Sequence[PartyModelInfo]:
            return list(self.agents.call(party, AgentRpc.LIST_MODELS, request, "", timeout).models)

        return call

    def _operated_on(self, model_id: str, model_version: str, since_ms: int) -> bool:
        """Whether an operation of the log on the version is unfinished, or is a delete that ended after ``since_ms``.

        Unfinished: running, or in doubt (it is that operation's to catalog or forget). A delete after ``since_ms``: the
        party's answer may predate it, and the catalog must not get back what the delete made it forget.
        """
        operations, _ = self.catalog.list_operations(model_id, model_version, "", 0, "")
        return any(
            not op.HasField("end_time") or (op.operation == DELETE and op.end_time.ToMilliseconds() >= since_ms)
            for op in operations
        )
