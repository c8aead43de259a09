"""Import on one party: an archive extracted as it arrives, checked, and published as a version."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

from fate_registry import faultpoints
from fate_registry.checksums import BackgroundSha256
from fate_registry.config import LimitsConf
from fate_registry.errors import Reason, RegistryError
from fate_registry.files import fsync_dir, write_durably
from fate_registry.identity import job_ids
from fate_registry.prefetch import prefetch
from fate_registry.v1.common_pb2 import ImportModelHeader, ImportModelResult
from party_agent import archive
from party_agent.archive_limits import DiskRoom, amount
from party_agent.lifecycle import VersionLifecycle
from party_agent.manifest import FileRecord, hash_file
from party_agent.model_cache import party_model_id_of
from party_agent.pipeline import PIPELINE_PATH, party_in_role, read_pipeline, record_from_pipeline, renamed


class ArchiveImporter:
    """Imports into ``lifecycle``'s cache, held to ``limits``; ``disk`` names the disk for messages."""

    def __init__(self, lifecycle: VersionLifecycle, limits: LimitsConf, disk: str) -> None:
        self.lifecycle = lifecycle
        self.cache = lifecycle.cache
        self.limits = limits
        self.disk = disk

    def run(
        self, header: ImportModelHeader, chunks: Iterator[bytes | memoryview], verified_source: bool = False
    ) -> ImportModelResult:
        """Import an archive as it arrives; ``verified_source`` as :func:`archive.unpack` takes it.

        An archive announced larger than the room on the disk is refused before a byte is written
        (compressed or not, an archive expands to about its size or more); its entries are held to
        the room as they come.
        """
        ref = header.target
        home = self.cache.version_dir(ref)  # validates every id before a byte is written
        if not header.force_update and self.cache.has_model(ref):
            raise RegistryError(
                Reason.MODEL_EXISTS, "Model already exists.", {"party_model_id": party_model_id_of(ref)}
            )
        if header.size > self.limits.max_archive_bytes:
            raise self._too_large()
        room = DiskRoom.of(self.cache.root, self.disk)
        if header.size > room.bytes:
            raise room.refusal(f"the archive is {amount(header.size)}")
        staging = self.lifecycle.new_staging()
        try:
            model_dir = staging / "model"
            model_dir.mkdir()
            digest = BackgroundSha256() if header.sha256 else None
            limits = archive.ArchiveLimits(
                self.limits.max_archive_bytes, self.limits.max_archive_entries, self.limits.max_expansion_ratio, room
            )
            received = faultpoints.midway(self._received(chunks, digest, header.size), "agent.import.receiving")
            manifest = archive.unpack(prefetch(received), model_dir, limits, verified_source, home)
            archive_sha256 = digest.hexdigest() if digest else ""
            if header.sha256 and header.sha256.lower() != archive_sha256:
                raise RegistryError(
                    Reason.DATA_LOSS,
                    f"Model archive hash mismatch. expected: {header.sha256} actual: {archive_sha256}",
                )
            pipeline = read_pipeline(model_dir)
            if not party_in_role(pipeline, ref.role, ref.party_id):
                raise RegistryError(
                    Reason.PARTY_NOT_IN_ROLE,
                    f'Party id "{ref.party_id}" is not in role "{ref.role}", '
                    "please check if the party id and role is valid.",
                )
            if (pipeline.model_id, pipeline.model_version) != (ref.model_id, ref.model_version):
                pipeline = renamed(pipeline, ref.model_id, ref.model_version)
                path = model_dir / PIPELINE_PATH
                write_durably(path, pipeline.SerializeToString())  # unpack fsynced the tree before this
                fsync_dir(path.parent)
                manifest = manifest.replace(FileRecord(PIPELINE_PATH, *hash_file(path)))
            job_id = job_ids.next()
            record = record_from_pipeline(ref, pipeline, manifest, job_id, imported=True)
            with self.cache.locks.write(self.cache.lock_key(ref)):
                self.lifecycle.publish(model_dir, record, replace=header.force_update)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return ImportModelResult(
            model=ref,
            job_id=job_id,
            manifest_digest=manifest.digest,
            size_bytes=manifest.total_size,
            file_count=len(manifest.files),
            archive_sha256=archive_sha256,
            roles_json=record.roles_json,
        )

    def _too_large(self) -> RegistryError:
        return RegistryError(
            Reason.ARCHIVE_TOO_LARGE, f"the archive is larger than {self.limits.max_archive_bytes} bytes, the limit"
        )

    def _received(
        self, chunks: Iterator[bytes | memoryview], digest: BackgroundSha256 | None, announced: int
    ) -> Iterator[bytes | memoryview]:
        """The archive's bytes as they arrive, bounded in size, hashed when the caller gave a hash.

        An archive whose size was ``announced`` (not 0) must arrive whole: a client that cannot send
        it all (the file changed or could not be read) ends its stream short to call the import off.
        """
        size = 0
        for chunk in chunks:
            size += len(chunk)
            if size > self.limits.max_archive_bytes:
                raise self._too_large()
            if digest is not None:
                digest.update(chunk)
            yield chunk
        if size == 0:
            raise RegistryError(Reason.BAD_ARCHIVE, "the archive is empty")
        if announced and size != announced:
            raise RegistryError(
                Reason.BAD_ARCHIVE, f"the archive arrived with {size} bytes where {announced} were announced"
            )
