"""The catalog's version list: versions newest first, filtered by model id, party, role, tag and state, paged.

One query finds a page, keyset-paged on (create_time, model_version) (:mod:`registry_server.paging`); every
filter is in it, so a rare match far down the list is found and the next page starts after the last row
returned. Two more fill the page's rows: its parties with their sizes, and its tags.

How the filters find their versions without a query per version (``bench.dashboard``: 100,000 versions): the
version rows are walked newest first on an index (of the model id, or of the state, when given) and each is
checked, or, for a tag or a party on fewer than ``LISTED_ROWS`` rows (counted first, up to there, on an index),
found from the list of its versions (:meth:`VersionListing._among`).

:class:`VersionListing` is the catalog's part that answers it (:class:`registry_server.catalog.Catalog`).
"""

from __future__ import annotations

from typing import Any

import peewee

from fate_registry.errors import Reason, RegistryError
from fate_registry.v1.common_pb2 import Party
from fate_registry.v1.registry_pb2 import ListModelVersionsRequest, ListModelVersionsResponse, ModelVersion
from registry_server import paging
from registry_server.operation_records import timestamp
from registry_server.serving_state import STATES
from registry_server.tag_store import TagStore

LISTED_ROWS = 5000


class VersionListing:
    """Pages of the catalog's versions."""

    db: peewee.Database
    tags: TagStore
    _version: Any  # the tables: peewee model classes
    _party_model: Any

    def list_versions(self, where: ListModelVersionsRequest) -> ListModelVersionsResponse:
        """A page of the versions ``where`` asks for (its empty fields match any) and the next page's token.

        Newest first, each with its parties, bytes, state and tags.
        """
        version = self._version
        query = self._matching(where)
        if where.page_token:
            start, last = paging.decode_token(where.page_token)
            query = query.where(
                (version.create_time < start) | ((version.create_time == start) & (version.model_version < last))
            )
        size = paging.page_size(where.page_size)
        with self.db.connection_context():
            rows = list(query.order_by(version.create_time.desc(), version.model_version.desc()).limit(size + 1))
        more = len(rows) > size
        rows = rows[:size]
        token = paging.encode_token(rows[-1].create_time, rows[-1].model_version) if more else ""
        return ListModelVersionsResponse(versions=self._filled(rows), next_page_token=token)

    def _matching(self, where: ListModelVersionsRequest) -> Any:
        """The version rows ``where`` matches (a query, unordered)."""
        if where.state and where.state not in STATES:
            raise RegistryError(
                Reason.INVALID_ARGUMENT,
                f"state {where.state!r} is not one of {', '.join(STATES)}",
                {"field": "state"},
            )
        version, pm = self._version, self._party_model
        query = version.select(version.model_id, version.model_version, version.create_time, version.state)
        if where.model_id:
            query = query.where(version.model_id == where.model_id)
        if where.state:
            query = query.where(version.state == where.state)
        if where.tag:
            query = self._among(query, self.tags.tagged(where.tag), self.tags.tagged(where.tag, version.model_version))
        if where.party_id or where.role:
            held = (pm.model_id == version.model_id) & (pm.model_version == version.model_version)
            for column, value in ((pm.role, where.role), (pm.party_id, where.party_id)):
                if value:
                    held &= column == value
            holders = pm.select(pm.model_version).where(pm.party_id == where.party_id) if where.party_id else None
            query = self._among(query, holders, pm.select(pm.id).where(held))
        return query

    def _among(self, query: Any, listed: Any, exact: Any) -> Any:
        """``query`` narrowed to the versions for which subquery ``exact`` finds a row.

        ``listed``: a subquery of the version ids among which they are (by id alone: one may be under two model ids),
        or None.
        When ``listed`` has fewer than ``LISTED_ROWS`` rows, the database finds the versions from that list (a rare
        party's or tag's version is found at once); else it checks each version in turn (most match: it ends soon).
        """
        if listed is not None:
            with self.db.connection_context():
                few = listed.limit(LISTED_ROWS).count() < LISTED_ROWS
            if few:
                query = query.where(self._version.model_version.in_(listed))
        return query.where(peewee.fn.EXISTS(exact))

    def _filled(self, rows: list[Any]) -> list[ModelVersion]:
        """The rows of a page as ModelVersion answers, with their parties, bytes and tags (two queries)."""
        pm = self._party_model
        names = [row.model_version for row in rows]
        with self.db.connection_context():
            parties = list(
                pm.select(pm.model_id, pm.model_version, pm.role, pm.party_id, pm.size_bytes)
                .where(pm.model_version.in_(names))
                .order_by(pm.role, pm.party_id)
                .dicts()
            )
        tags = self.tags.names_on(names)
        held: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for party in parties:
            held.setdefault((party["model_id"], party["model_version"]), []).append(party)
        versions = []
        for row in rows:
            slices = held.get((row.model_id, row.model_version), [])
            versions.append(
                ModelVersion(
                    model_id=row.model_id,
                    model_version=row.model_version,
                    create_time=timestamp(row.create_time),
                    parties=[Party(role=p["role"], party_id=p["party_id"]) for p in slices],
                    size_bytes=sum(p["size_bytes"] for p in slices),
                    state=row.state,
                    tags=tags.get(row.model_version, []),
                )
            )
        return versions
