"""Migrate on one party: its slice rewritten for new party ids, prepared for a two-phase commit.

The new slice (fate_flow.md §6.8) gets the new model id (from the new role map), the unified
version, a rewritten Pipeline and every component buffer that carries party ids rewritten
(:mod:`party_agent.party_rewrite`); the others are carried over byte for byte. Beside it the archive
``<new party_model_id>_<version>.zip`` is prepared for import on the new federation. At commit
the slice is registered here, as FATE-Flow does, and the archive lands in ``<data_dir>/migrated``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from fate_registry.archives_conf import ArchivesConf
from fate_registry.errors import Reason, RegistryError
from fate_registry.identity import archive_name, gen_model_id, party_model_id, typed_ids
from fate_registry.migration_roles import party_map
from fate_registry.v1.common_pb2 import PartyModelRef
from party_agent.archive import import_model_json, stream_archive
from party_agent.buffers import read_define_meta
from party_agent.lifecycle import ARCHIVE, VersionLifecycle
from party_agent.manifest import MANIFEST_ENTRY, Manifest, scan
from party_agent.metadata import PartyModelRecord
from party_agent.party_rewrite import MIGRATED_MODULES, message_json, rewrite_component, rewrite_pipeline
from party_agent.pipeline import PIPELINE_PATH, json_of, read_pipeline

PIPELINE_COMPONENT = "pipeline"
CARRIED = ("define", "run_parameters", "variables")  # checkpoints stay behind, as in FATE-Flow 1.9+


@dataclasses.dataclass(frozen=True)
class MigrateRequest:
    """A party's share of a migrate: the source version, the old and new role maps, initiator and version."""

    source: PartyModelRef
    old_roles: Mapping[str, Sequence[str]]
    new_roles: Mapping[str, Sequence[str]]
    new_initiator: tuple[str, str]
    new_version: str


@dataclasses.dataclass(frozen=True)
class Migrated:
    """A prepared migrate: the new slice, its manifest and the archive written for the new federation."""

    model: PartyModelRef
    manifest: Manifest
    archive: Path


class Migrator:
    """Prepares a migrate's new slice and its archive on this party; the lifecycle commits or aborts it."""

    def __init__(
        self, lifecycle: VersionLifecycle, archive_dir: Path, chunk_bytes: int, archives: ArchivesConf
    ) -> None:
        self.lifecycle = lifecycle
        self.cache = lifecycle.cache
        self.archive_dir = archive_dir
        self.chunk_bytes = chunk_bytes
        self.archives = archives

    def prepare(self, operation_id: str, request: MigrateRequest, source_record: PartyModelRecord) -> Migrated:
        source = request.source
        mapping = party_map(request.old_roles, request.new_roles)
        new_party = mapping.get(source.role, {}).get(source.party_id)
        if new_party is None:
            raise RegistryError(
                Reason.INVALID_ARGUMENT, f"party {source.party_id} is not in role {source.role} of the migration"
            )
        new_roles = {role: typed_ids(ids) for role, ids in request.new_roles.items()}
        new_model_id = gen_model_id(new_roles)
        new_ref = PartyModelRef(
            role=source.role, party_id=new_party, model_id=new_model_id, model_version=request.new_version
        )
        target_archive = self.archive_dir / archive_name(
            party_model_id(new_ref.role, new_ref.party_id, new_model_id), new_ref.model_version
        )
        place = self.lifecycle.place(operation_id, source.role)
        done = self.lifecycle.prepared(place)
        if done is not None:  # a retried prepare: the first one finished
            return Migrated(new_ref, done.manifest, target_archive)
        if self.cache.has_model(new_ref) or target_archive.exists():
            raise RegistryError(
                Reason.MODEL_EXISTS,
                f"Unify model version {request.new_version} has been occupied in database. "
                "Please choose another unify model version and try again.",
            )
        target = self.lifecycle.start(operation_id, place)
        try:
            source_dir = self.cache.version_dir(source)
            with self.cache.locks.read(self.cache.lock_key(source)):
                for part in CARRIED:
                    if (source_dir / part).is_dir():
                        shutil.copytree(source_dir / part, target / part, ignore=shutil.ignore_patterns(".lock"))
            self._rewrite_components(target, mapping)
            initiator = (request.new_initiator[0], request.new_initiator[1])
            pipeline_path = target / PIPELINE_PATH
            new_pipeline = rewrite_pipeline(
                pipeline_path.read_bytes(), new_model_id, new_ref.model_version, new_roles, initiator
            )
            pipeline_path.write_bytes(new_pipeline)
            sidecar = pipeline_path.with_name("Pipeline.json")
            if sidecar.exists():
                sidecar.write_text(message_json("Pipeline", new_pipeline), encoding="utf-8")
            pipeline = read_pipeline(target)
            manifest = scan(target)
            record = dataclasses.replace(
                source_record,
                party_id=new_party,
                model_id=new_model_id,
                model_version=new_ref.model_version,
                job_id=new_ref.model_version,
                manifest=manifest,
                roles_json=json.dumps(new_roles),
                initiator_role=pipeline.initiator_role,
                initiator_party_id=str(pipeline.initiator_party_id) if pipeline.initiator_party_id else "",
                train_runtime_conf_json=json.dumps(json_of(pipeline.train_runtime_conf)),
                runtime_conf_on_party_json=json.dumps(json_of(pipeline.runtime_conf_on_party)),
                loaded_times=0,
                imported=False,
                create_time_ms=0,
            )
            self._write_archive(place / ARCHIVE, target, manifest, new_ref)
            self.lifecycle.seal(operation_id, place, record, target_archive)
        except BaseException:
            shutil.rmtree(place, ignore_errors=True)
            raise
        return Migrated(new_ref, manifest, target_archive)

    @staticmethod
    def _rewrite_components(target: Path, mapping: Mapping[str, Mapping[str, str]]) -> None:
        meta = read_define_meta(target)
        modules = {c: (d or {}).get("module_name", "") for c, d in (meta.get("component_define") or {}).items()}
        for component, aliases in (meta.get("model_proto") or {}).items():
            module = str(modules.get(component, ""))
            if component == PIPELINE_COMPONENT or module not in MIGRATED_MODULES:
                continue  # carried over as copied, never read: an LR Param can be gigabytes
            for alias, classes in (aliases or {}).items():
                directory = target / "variables" / "data" / str(component) / str(alias)
                buffers = {name: (directory / name).read_bytes() for name in classes}
                rewritten = rewrite_component(module, buffers, dict(classes), mapping)
                for name, data in rewritten.items():
                    if data is not buffers[name]:
                        (directory / name).write_bytes(data)
                        sidecar = directory / f"{name}.json"
                        if sidecar.exists():
                            sidecar.write_text(message_json(classes[name], data), encoding="utf-8")

    def _write_archive(self, path: Path, model_dir: Path, manifest: Manifest, ref: PartyModelRef) -> None:
        name = archive_name(party_model_id(ref.role, ref.party_id, ref.model_id), ref.model_version)
        extra = {"import_model.json": import_model_json(ref, name), MANIFEST_ENTRY: manifest.to_json().encode()}
        with path.open("wb") as out:
            for piece in stream_archive(model_dir, manifest, extra, self.chunk_bytes, self.archives):
                out.write(piece)
