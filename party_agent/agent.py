"""One party's agent: what it does with its models (import, export, describe, delete, store, serve, deploy)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fate_registry import faultpoints
from fate_registry.checksums import crc32
from fate_registry.config import PartyConf, ServiceConf
from fate_registry.errors import Reason, RegistryError, Retcode
from fate_registry.identity import archive_name
from fate_registry.prefetch import prefetch
from fate_registry.v1.common_pb2 import (
    ExportModelHeader,
    ExportModelTrailer,
    ImportModelHeader,
    ImportModelResult,
    PartyModelInfo,
    PartyModelRef,
)
from party_agent import archive, serving
from party_agent.archive import import_model_json
from party_agent.archive_import import ArchiveImporter
from party_agent.buffers import Buffer, base64_length, buffers, verified_base64
from party_agent.deploy import Deployer, DeployRequest
from party_agent.homo_convert.convert import Conversion, convert_version
from party_agent.homo_deploy.request import HomoDeployRequest
from party_agent.lifecycle import VersionLifecycle
from party_agent.manifest import MANIFEST_ENTRY, Manifest, scan
from party_agent.metadata import MetadataStore, PartyModelRecord
from party_agent.migrate import Migrated, MigrateRequest, Migrator
from party_agent.model_cache import ModelCache, files_size, party_model_id_of
from party_agent.pipeline import fate_version, read_pipeline, record_from_pipeline
from party_agent.serving import ServingAnswer
from party_agent.storage import ModelStore, StoredObject, StoreKey, open_store
from party_agent.storage.base import not_found
from party_agent.transfer_http import PATH as TRANSFER_PATH

log = logging.getLogger(__name__)


def catalog_info(record: PartyModelRecord, manifest_digest: str, size_bytes: int, file_count: int) -> PartyModelInfo:
    """What the coordinator's catalog keeps of a version (:meth:`PartyAgent.held_versions`)."""
    return PartyModelInfo(
        role=record.role,
        party_id=record.party_id,
        model_id=record.model_id,
        model_version=record.model_version,
        roles_json=record.roles_json,
        parent=record.parent,
        parent_info_json=record.parent_info_json,
        job_id=record.job_id,
        imported=record.imported,
        manifest_digest=manifest_digest,
        size_bytes=size_bytes,
        file_count=file_count,
    )


@dataclass(frozen=True)
class ExportPiece:
    """One message of an export stream: exactly one field is set."""

    header: ExportModelHeader | None = None
    chunk: bytes = b""
    trailer: ExportModelTrailer | None = None


def _dsl_version(record: PartyModelRecord) -> int:
    try:
        return int(json.loads(record.train_runtime_conf_json or "{}").get("dsl_version", 1))
    except (ValueError, TypeError, AttributeError):
        return 1


class PartyAgent:
    """The agent of one party, and of the party ids its migrated slices took; the servicers call it."""

    def __init__(self, conf: ServiceConf, party: PartyConf) -> None:
        self.party = party
        self.limits = conf.limits
        self.archives = conf.archives
        self.metadata = MetadataStore(party.database)
        self.cache = ModelCache(party.model_cache_dir)
        self.lifecycle = VersionLifecycle(self.cache, self.metadata)
        self.importer = ArchiveImporter(self.lifecycle, conf.limits, f"party {party.party_id}'s disk")
        self.deployer = Deployer(self.lifecycle)
        self.model_store_engine = conf.model_store.storage if conf.model_store else ""
        self.enable_model_store = conf.enable_model_store
        self.model_store = open_store(conf.model_store.storage, conf.model_store.settings) if conf.model_store else None
        self.migrator = Migrator(
            self.lifecycle, party.data_dir / "migrated", conf.limits.download_chunk_bytes, conf.archives
        )
        for action in self.lifecycle.recover():
            log.info("recovery: %s", action)
        # Set by the process that serves the transfer endpoint, once it is bound.
        self.transfer_host, self.transfer_port = party.transfer_address.host, party.transfer_address.port

    def close(self) -> None:
        if self.model_store is not None:
            self.model_store.close()
        self.metadata.close()

    def acts_for(self, party_id: str) -> bool:
        """This agent's own party, or a party it holds migrated slices of (FATE-Flow serves those too)."""
        return party_id == self.party.party_id or self.metadata.holds_party(party_id)

    def check_party(self, ref: PartyModelRef) -> None:
        if not self.acts_for(ref.party_id):
            raise RegistryError(
                Reason.PERMISSION_DENIED,
                f"the agent of party {self.party.party_id} cannot act for party {ref.party_id}",
                {"party_id": ref.party_id},
            )

    # -- import ---------------------------------------------------------------------------------

    def import_archive(
        self, header: ImportModelHeader, chunks: Iterator[bytes | memoryview], verified_source: bool = False
    ) -> ImportModelResult:
        """:meth:`ArchiveImporter.run` for a party this agent acts for."""
        self.check_party(header.target)
        return self.importer.run(header, chunks, verified_source)

    # -- export ---------------------------------------------------------------------------------

    def export_archive(self, ref: PartyModelRef, stored: bool = False) -> Iterator[ExportPiece]:
        """The version's archive: its entries written as the conf's ``archives`` says, or all stored if ``stored``."""
        self.check_party(ref)
        record = self.record(ref)
        name = archive_name(party_model_id_of(ref), ref.model_version)
        with self.cache.locks.read(self.cache.lock_key(ref)):
            yield ExportPiece(
                header=ExportModelHeader(
                    file_name=name,
                    party_model_id=party_model_id_of(ref),
                    manifest_digest=record.manifest.digest,
                    content_size=record.manifest.total_size,
                )
            )
            extra = {
                "import_model.json": import_model_json(ref, name),
                MANIFEST_ENTRY: record.manifest.to_json().encode(),
            }
            pieces = archive.stream_archive(
                self.cache.version_dir(ref),
                record.manifest,
                extra,
                self.limits.download_chunk_bytes,
                self.archives.stored if stored else self.archives,
            )
            size, crc = 0, 0
            for piece in pieces:
                size += len(piece)
                crc = crc32(piece, crc)
                yield ExportPiece(chunk=piece)
        yield ExportPiece(trailer=ExportModelTrailer(crc32=crc, size=size))

    # -- FATE-Serving -----------------------------------------------------------------------------

    @property
    def transfer_url(self) -> str:
        """Where this party's FATE-Serving pulls model bytes from (HTTPS when the agent has a certificate)."""
        scheme = "https" if self.party.tls.cert else "http"
        return self.party.transfer_url or f"{scheme}://{self.transfer_host}:{self.transfer_port}{TRANSFER_PATH}"

    def load(
        self,
        ref: PartyModelRef,
        roles: Mapping[str, Sequence[str]],
        load_type: str,
        file_path: str,
        use_transfer_url: bool,
    ) -> ServingAnswer:
        """FATE's /model/load/do: only a deployed version loads, on every FATE-Serving of the party."""
        self.sync_with_store(ref)
        record = self._record_for_serving(ref)
        if record.parent and _dsl_version(record) != 1 and fate_version(record.fate_version) > (1, 5, 0):
            return ServingAnswer(
                Retcode.EXCEPTION_ERROR,
                "Only deployed models could be used to execute process of loading. Please deploy model before loading.",
            )
        request = serving.publish_request(ref, roles)
        request.loadType = load_type or "FATEFLOW"
        request.filePath = file_path if use_transfer_url else self.transfer_url
        answer = serving.load(self.party.servings, self.party.serving_tls, request)
        if answer.retcode == 0:
            self.metadata.count_load(ref)
        return answer

    def bind(
        self, ref: PartyModelRef, roles: Mapping[str, Sequence[str]], service_id: str, servings: Sequence[str]
    ) -> ServingAnswer:
        self._record_for_serving(ref)
        request = serving.publish_request(ref, roles, only_own_model=True)
        request.serviceId = service_id
        answer = serving.bind(list(servings) or self.party.servings, self.party.serving_tls, request)
        return ServingAnswer(answer.retcode, f"service id is {service_id}") if answer.retcode == 0 else answer

    def unload(self, ref: PartyModelRef) -> ServingAnswer:
        self._record_for_serving(ref)
        return serving.unload(self.party.servings, self.party.serving_tls, ref)

    def unbind(self, ref: PartyModelRef, service_ids: Sequence[str]) -> ServingAnswer:
        self._record_for_serving(ref)
        return serving.unbind(self.party.servings, self.party.serving_tls, ref, service_ids)

    def _record_for_serving(self, ref: PartyModelRef) -> PartyModelRecord:
        try:
            return self.record(ref)
        except RegistryError as exc:
            if exc.reason is Reason.MODEL_NOT_FOUND:
                raise RegistryError(
                    Reason.MODEL_NOT_FOUND,
                    f"Model {party_model_id_of(ref)} {ref.model_version} not exists in model local cache.",
                    retcode=Retcode.EXCEPTION_ERROR,
                ) from None
            raise

    def transfer_body(self, ref: PartyModelRef) -> tuple[Iterator[bytes], int]:
        """FATE-Flow's model-transfer answer for ``ref``, as pieces to stream, and its length.

        The pieces are read under the version's read lock, so a forced re-import waits for the pull.
        """
        try:
            record = self.record(ref)
        except RegistryError as exc:
            if exc.reason in (Reason.MODEL_NOT_FOUND, Reason.PERMISSION_DENIED, Reason.INVALID_ID):
                raise RegistryError(Reason.MODEL_NOT_FOUND, "model not found") from None
            raise
        directory = self.cache.version_dir(ref)
        sizes = record.manifest.by_path()
        parts: list[tuple[bytes, Buffer]] = []
        length = 0
        opening = b'{"retcode": 0, "retmsg": "success", "data": {'
        for i, buffer in enumerate(buffers(directory)):
            if buffer.path not in sizes:
                raise RegistryError(Reason.DATA_LOSS, f"{buffer.path} is in the proto index but not in the manifest")
            prefix = (opening if i == 0 else b'", ') + json.dumps(buffer.key).encode() + b': "'
            parts.append((prefix, buffer))
            length += len(prefix) + base64_length(sizes[buffer.path].size)
        closing = b'"}}' if parts else opening + b"}}"

        def body() -> Iterator[bytes]:
            with self.cache.locks.read(self.cache.lock_key(ref)):
                for prefix, buffer in parts:
                    yield prefix
                    yield from verified_base64(directory, record.manifest, buffer)
                yield closing

        return body(), length + len(closing)

    def delete(self, ref: PartyModelRef, from_store: bool) -> tuple[bool, bool]:
        """Delete the version here (if it is here) and, when asked, in the model store: all or nothing here.

        The store's copy goes first, so a store that cannot be reached (or refuses) fails the delete
        before the local copy is touched. Stopped between the two, the store's copy is gone and the
        local one, its row and its catalog row are kept (the coordinator asks this party when it lost
        the answer); the same delete, sent again, finishes it. Both steps hold the version's write lock:
        no export, load or store reads the version in between.
        """
        self.check_party(ref)
        with self.cache.locks.write(self.cache.lock_key(ref)):
            deleted_store = False
            if from_store:
                deleted_store = self._delete_stored(ref)
                faultpoints.reached("agent.delete.store_deleted")
            deleted_local = self.cache.has_model(ref) or self.metadata.get(ref) is not None
            if deleted_local:
                self.lifecycle.delete(ref)
        if not deleted_local and not deleted_store:
            raise RegistryError(
                Reason.MODEL_NOT_FOUND, f"Model {party_model_id_of(ref)} {ref.model_version} does not exist."
            )
        return deleted_local, deleted_store

    def _delete_stored(self, ref: PartyModelRef) -> bool:
        """Delete the store's copy of ``ref`` (False: there was none); its failure says the local copy is kept."""
        try:
            return self._model_store().delete(self._store_key(ref))
        except RegistryError as exc:
            kept = f"; nothing was deleted on party {self.party.party_id}: its local copy is kept"
            raise RegistryError(exc.reason, exc.message + kept, exc.metadata, exc.retcode) from None

    # -- the model store ----------------------------------------------------------------------------

    def _model_store(self) -> ModelStore:
        if self.model_store is None:
            raise RegistryError(
                Reason.INVALID_ARGUMENT,
                "no model store is configured: set model_store_address in the service conf",
                retcode=Retcode.ARGUMENT_ERROR,
            )
        return self.model_store

    def _store_key(self, ref: PartyModelRef) -> StoreKey:
        return StoreKey(party_model_id_of(ref), ref.model_version)

    def store_model(self, ref: PartyModelRef, force: bool, stored: bool = False) -> tuple[StoredObject, str]:
        """FATE's store: the version's archive (ours, with its manifest; all stored if ``stored``) into the engine."""
        store = self._model_store()
        key = self._store_key(ref)
        if not force and store.exists(key):
            raise RegistryError(
                Reason.MODEL_EXISTS,
                f"The model {key.party_model_id} {key.model_version} already "
                "exists in the model store; use force_update to replace it.",
            )
        expected = None
        if store.digest_first(self.record(ref).manifest.total_size):
            expected = self._archive_sha256(ref, stored)  # the archive's bytes are the same each time it is made
        # the archive is read (and its CRCs checked) on a thread of its own while the engine sends
        chunks = prefetch(self._archive_bytes(ref, stored))
        written = store.put(key, faultpoints.midway(chunks, "agent.store.writing"), expected, force)
        self.metadata.set_archive_sha256(ref, written.sha256)
        return written, f"{self.model_store_engine}:{key.party_model_id}/{key.model_version}"

    def _archive_bytes(self, ref: PartyModelRef, stored: bool) -> Iterator[bytes]:
        return (piece.chunk for piece in self.export_archive(ref, stored) if piece.chunk)

    def _archive_sha256(self, ref: PartyModelRef, stored: bool) -> str:
        digest = hashlib.sha256()
        for chunk in self._archive_bytes(ref, stored):
            digest.update(chunk)
        return digest.hexdigest()

    def restore_model(self, ref: PartyModelRef, force: bool, sha256: str) -> ImportModelResult:
        """FATE's restore, plus what FATE forgets: the restored version is verified and registered.

        The engine checks the whole stored copy against the SHA-256 recorded when it was stored
        before its stream ends (the copy read is pinned to the one stat saw), so the files are
        checked by size and CRC-32 against the archive's manifest instead of being hashed again.
        """
        store = self._model_store()
        key = self._store_key(ref)
        remote = store.stat(key)
        if remote is None:
            raise not_found(self.model_store_engine, key)
        if sha256 and sha256.lower() != remote.sha256:
            raise RegistryError(
                Reason.DATA_LOSS,
                f"Model archive hash mismatch. expected: {sha256} actual: {remote.sha256} "
                f"(the copy in the {self.model_store_engine} model store); nothing was changed here",
            )
        header = ImportModelHeader(target=ref, force_update=force)
        try:
            result = self.import_archive(header, store.open(key, pinned=remote), verified_source=True)
        except RegistryError as exc:
            if exc.reason not in (Reason.DATA_LOSS, Reason.BAD_ARCHIVE):
                raise
            raise RegistryError(
                Reason.DATA_LOSS,
                f"the stored copy of model {key.party_model_id} {key.model_version} in the "
                f"{self.model_store_engine} model store is corrupt, nothing was changed here: {exc.message}",
            ) from None
        self.metadata.set_archive_sha256(ref, remote.sha256)
        result.archive_sha256 = remote.sha256
        return result

    def sync_with_store(self, ref: PartyModelRef) -> None:
        """Bring one version in step with the model store (``enable_model_store``).

        A version only here is uploaded, one only in the store is downloaded (and verified), one in both that differs
        from what was last stored or restored is replaced by the store's copy, as FATE-Flow does; an identical copy is
        left alone.
        """
        if not self.enable_model_store or self.model_store is None:
            return
        self.check_party(ref)
        remote = self.model_store.stat(self._store_key(ref))
        local = self.cache.has_model(ref)
        if local and remote is None:
            self.record(ref)
            self.store_model(ref, force=False)
        elif remote is not None and not local:
            self.restore_model(ref, force=False, sha256=remote.sha256)
        elif remote is not None and self.metadata.archive_sha256(ref) != remote.sha256:
            self.restore_model(ref, force=True, sha256=remote.sha256)

    def version_dir_of(self, ref: PartyModelRef) -> Path:
        """The directory of a version this party holds (MODEL_NOT_FOUND otherwise)."""
        self.record(ref)
        return self.cache.version_dir(ref)

    # -- deploy -------------------------------------------------------------------------------------

    def prepare_deploy(self, operation_id: str, request: DeployRequest) -> Manifest:
        self.sync_with_store(request.source)
        return self.deployer.prepare(operation_id, request, self.record(request.source))

    def prepare_migrate(self, operation_id: str, request: MigrateRequest) -> Migrated:
        self.sync_with_store(request.source)
        return self.migrator.prepare(operation_id, request, self.record(request.source))

    # -- homo-convert ---------------------------------------------------------------------------

    def homo_convert(self, ref: PartyModelRef, framework_name: str) -> Conversion:
        """Convert the version's homo components; with the model store on, the store gets the new version."""
        self.sync_with_store(ref)
        try:
            self.record(ref)  # a version FATE-Flow wrote gets its record (and manifest) first
        except RegistryError as exc:
            if exc.reason is Reason.MODEL_NOT_FOUND:  # FATE answers 100 here
                raise RegistryError(exc.reason, exc.message, exc.metadata, Retcode.EXCEPTION_ERROR) from None
            raise
        conversion = convert_version(self.lifecycle, ref, framework_name)
        if self.enable_model_store and self.model_store is not None:
            self.store_model(ref, force=True)
        return conversion

    # -- model info -----------------------------------------------------------------------------

    def homo_deploy(self, ref: PartyModelRef, request: HomoDeployRequest) -> dict[str, Any]:
        """Serve the version's converted component in KServe; the InferenceService created or replaced."""
        # Imported here: the kubernetes and boto3 clients are most of an agent's import time otherwise.
        from party_agent.homo_deploy.deploy import homo_deploy

        record = self.record(ref)
        with self.cache.locks.read(self.cache.lock_key(ref)):
            return homo_deploy(self.cache.version_dir(ref), record, party_model_id_of(ref), request)

    def record(self, ref: PartyModelRef) -> PartyModelRecord:
        """The version's record; a directory FATE-Flow wrote (no row yet) is adopted by hashing it."""
        self.check_party(ref)
        found = self.metadata.get(ref)
        if found is not None:
            return found
        if not self.cache.has_model(ref):
            raise RegistryError(
                Reason.MODEL_NOT_FOUND,
                f"Model {party_model_id_of(ref)} {ref.model_version} does not exist.",
                {"party_model_id": party_model_id_of(ref), "model_version": ref.model_version},
            )
        with self.cache.locks.write(self.cache.lock_key(ref)):
            directory = self.cache.version_dir(ref)
            record = record_from_pipeline(ref, read_pipeline(directory), scan(directory), ref.model_version, False)
            self.metadata.save(record)
        return record

    def held_versions(
        self, model_id: str = "", model_version: str = "", unrecorded_only: bool = False
    ) -> list[PartyModelInfo]:
        """The versions of ``model_id`` and ``model_version`` (empty: any) this agent holds for the parties it acts for.

        They are as the coordinator's catalog keeps them (:func:`catalog_info`); ``unrecorded_only``: only those without
        a record here (the directories of the others are not looked into).

        A directory FATE-Flow wrote that has no record yet is described from its Pipeline and its files'
        sizes, not hashed (its manifest digest is empty): it is adopted on first use (:meth:`record`). One
        without a readable Pipeline (FATE-Flow has not finished writing it) is left out.
        """
        held = []
        acting: dict[str, bool] = {}
        for ref in self.cache.versions(model_id, model_version, self.metadata.keys() if unrecorded_only else ()):
            if ref.party_id not in acting:
                acting[ref.party_id] = self.acts_for(ref.party_id)
            if not acting[ref.party_id]:
                continue
            record = None if unrecorded_only else self.metadata.get(ref)
            if record is not None:
                manifest = record.manifest
                held.append(catalog_info(record, manifest.digest, manifest.total_size, len(manifest.files)))
                continue
            directory = self.cache.version_dir(ref)
            try:
                pipeline = read_pipeline(directory)
            except (RegistryError, OSError):
                continue
            described = record_from_pipeline(ref, pipeline, Manifest(()), ref.model_version, False)
            held.append(catalog_info(described, "", *files_size(directory)))
        return held
