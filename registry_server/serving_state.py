"""What FATE-Serving was told of each version, kept in the catalog as the operations succeed: its state.

A version's state is kept in its version row, so the version list filters on it with an index:

- ``bound``: bound to a service id on some party (a successful bind) and not unbound since, nor the service
  id bound to another version of that party since (FATE-Serving keeps one model per service id);
- else ``loaded``: some party loaded it (a successful load, not rolled back) and did not unload it since;
- else ``deployed``: a child (a party's row is not a parent);
- else ``parent``.

:class:`ServingRecords` is the catalog's part that keeps it (:class:`registry_server.catalog.Catalog`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import peewee

from fate_registry.db import in_transaction

PARENT, DEPLOYED, LOADED, BOUND = "parent", "deployed", "loaded", "bound"
STATES = (PARENT, DEPLOYED, LOADED, BOUND)
VersionKey = tuple[str, str]  # (model_id, model_version)
RESTATED_AT_ONCE = 400  # versions per statement (SQLite allows 999 bound values before 3.32)


def serving_tables(base: Any) -> tuple[Any, Any]:
    """The tables of loaded parties and of service bindings, on the database of ``base`` (a peewee model base)."""

    class OfAVersion(base):  # type: ignore[misc]
        """What both hold of a version (not a table itself)."""

        model_id = peewee.CharField(max_length=255)
        model_version = peewee.CharField(max_length=255)
        party_id = peewee.CharField(max_length=50)

    class LoadedParty(OfAVersion):
        """A party that loaded a version into its FATE-Serving and has not unloaded it."""

        role = peewee.CharField(max_length=50)

        class Meta:
            table_name = "t_registry_loaded_party"
            indexes = ((("model_id", "model_version", "role", "party_id"), True),)

    class ServiceBinding(OfAVersion):
        """The version a party's FATE-Serving answers a service id with."""

        service_id = peewee.CharField(max_length=255)

        class Meta:
            table_name = "t_registry_service_binding"
            indexes = ((("party_id", "service_id"), True), (("model_id", "model_version"), False))

    return LoadedParty, ServiceBinding


class ServingRecords:
    """Loads, binds and their undoing as the catalog records them, and each version's state."""

    db: peewee.Database
    _version: Any  # the tables: peewee model classes
    _party_model: Any
    _loaded: Any
    _binding: Any

    def mark_loaded(self, model_id: str, model_version: str, parties: Sequence[tuple[str, str]]) -> None:
        """(role, party_id) of each party that loaded the version; it counts in FATE's loaded_times too."""
        pm, loaded = self._party_model, self._loaded

        def write() -> None:
            for role, party_id in parties:
                same = _same(pm, model_id, model_version) & (pm.role == role) & (pm.party_id == party_id)
                pm.update(loaded_times=pm.loaded_times + 1).where(same).execute()
            if parties:
                loaded.insert_many(
                    [
                        {"model_id": model_id, "model_version": model_version, "role": role, "party_id": party}
                        for role, party in parties
                    ]
                ).on_conflict_ignore().execute()
                self.restate([(model_id, model_version)])

        in_transaction(self.db, write)

    def mark_unloaded(self, model_id: str, model_version: str, parties: Sequence[tuple[str, str]]) -> None:
        """(role, party_id) of each party that unloaded the version."""
        loaded = self._loaded

        def write() -> None:
            for role, party_id in parties:
                same = _same(loaded, model_id, model_version) & (loaded.role == role)
                loaded.delete().where(same & (loaded.party_id == party_id)).execute()
            self.restate([(model_id, model_version)])

        if parties:
            in_transaction(self.db, write)

    def mark_bound(self, model_id: str, model_version: str, party_id: str, service_id: str) -> None:
        """``party_id``'s FATE-Serving answers ``service_id`` with this version now (no longer with another)."""
        binding = self._binding
        same_service = (binding.party_id == party_id) & (binding.service_id == service_id)

        def write() -> None:
            before = [(r.model_id, r.model_version) for r in binding.select().where(same_service)]
            binding.delete().where(same_service).execute()
            binding.insert(
                party_id=party_id, service_id=service_id, model_id=model_id, model_version=model_version
            ).execute()
            self.restate([*before, (model_id, model_version)])

        in_transaction(self.db, write)

    def mark_unbound(self, model_id: str, model_version: str, service_ids: Sequence[str]) -> None:
        """The version is no longer bound to ``service_ids`` (on any party)."""
        binding = self._binding

        def write() -> None:
            same = _same(binding, model_id, model_version) & binding.service_id.in_(list(service_ids))
            binding.delete().where(same).execute()
            self.restate([(model_id, model_version)])

        if service_ids:
            in_transaction(self.db, write)

    def restate(self, versions: Iterable[VersionKey]) -> None:
        """Recompute the state of ``versions`` from their rows (inside the transaction that changed them).

        Three reads of the versions' bindings, loads and child rows, then an update per state and model id: a
        correlated update took MariaDB seconds for 500 versions (it looked the party rows up by model id alone).
        """
        keys = list(dict.fromkeys(versions))
        for start in range(0, len(keys), RESTATED_AT_ONCE):
            chunk = keys[start : start + RESTATED_AT_ONCE]
            pm = self._party_model
            bound, loaded = self._held_in(self._binding, chunk), self._held_in(self._loaded, chunk)
            child = self._held_in(pm, chunk, pm.parent == False)  # noqa: E712  # SQL, not Python
            groups: dict[tuple[str, str], list[str]] = {}
            for key in chunk:
                state = BOUND if key in bound else LOADED if key in loaded else DEPLOYED if key in child else PARENT
                groups.setdefault((state, key[0]), []).append(key[1])
            version = self._version
            for (state, model_id), ids in groups.items():
                same = (version.model_id == model_id) & version.model_version.in_(ids)
                version.update(state=state).where(same).execute()

    @staticmethod
    def _held_in(rows: Any, keys: list[VersionKey], *where: Any) -> set[VersionKey]:
        """Which of ``keys`` have a row in table ``rows`` (that also meets ``where``)."""
        # By version id (the index of the party rows: a model's many versions share its id); the pairs are matched here.
        named = rows.model_version.in_([v for _, v in keys])
        query = rows.select(rows.model_id, rows.model_version).where(named, *where)
        return {(row.model_id, row.model_version) for row in query} & set(keys)

    def forget_serving(self, model_id: str, model_version: str, role: str, party_id: str) -> None:
        """A party deleted its slice: it holds nothing loaded; a version no party holds is bound to nothing."""
        loaded, binding, pm = self._loaded, self._binding, self._party_model
        loaded.delete().where(
            _same(loaded, model_id, model_version) & (loaded.role == role) & (loaded.party_id == party_id)
        ).execute()
        if not pm.select(pm.id).where(_same(pm, model_id, model_version)).exists():
            binding.delete().where(_same(binding, model_id, model_version)).execute()
        self.restate([(model_id, model_version)])


def _same(table: Any, model_id: str, model_version: str) -> Any:
    return (table.model_id == model_id) & (table.model_version == model_version)
