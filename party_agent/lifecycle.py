"""A version's life on one party: built in staging, published, deleted, and put right after a crash.

Every change of a version directory goes through here, so one :meth:`VersionLifecycle.recover` puts
right whatever a crash interrupted:

- An import or conversion builds the version in ``.staging/stage-*`` (same filesystem), fsynced,
  and :meth:`~VersionLifecycle.publish` renames it into place, the version it replaces parked in
  ``.trash/``. Each publish and delete is journalled in the metadata database first, so the version
  directory and its model row always agree after a restart.
- A two-phase operation (deploy, migrate) prepares its version in ``.staging/prep-<operation>-<role>/model``
  with ``prepared.json`` (its record) beside it, and optionally ``archive.zip`` to be moved to a
  destination at commit; nothing is visible until the commit publishes it. ``prepared.json`` is the
  commit's journal. Commit and abort are idempotent and run one at a time (the coordinator's
  maintenance loop may resend a decision while the first sending is still being carried out); a
  prepared version survives an agent restart, so the coordinator alone decides its fate (DESIGN §5.1).
  An abort is remembered (``.staging/aborted-<operation>``), so a prepare that arrives after it leaves
  nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path

from fate_registry import faultpoints
from fate_registry.errors import Reason, RegistryError
from fate_registry.files import fsync_dir, fsync_tree, write_durably
from fate_registry.identity import validate_name
from fate_registry.v1.common_pb2 import PartyModelRef
from party_agent.metadata import MetadataStore, PartyModelRecord, PendingPublish, record_from_json, record_to_json
from party_agent.model_cache import ModelCache, ref_of

STAGING = ".staging"
TRASH = ".trash"
# Marks a staged directory that a two-phase operation prepared: kept across restarts.
PREPARED_MARKER = "prepared.json"
# Remembers an aborted two-phase operation in staging, so a prepare arriving late does not stay.
ABORTED_PREFIX = "aborted-"
ABORTED_KEEP_SECONDS = 7 * 24 * 3600
ARCHIVE = "archive.zip"
ARCHIVE_TARGET = "archive_target"


class VersionLifecycle:
    """Owns staging, trash, the publish journal and the prepared versions of ``cache``, recorded in ``metadata``."""

    def __init__(self, cache: ModelCache, metadata: MetadataStore) -> None:
        self.cache = cache
        self.metadata = metadata
        for sub in (STAGING, TRASH):
            (cache.root / sub).mkdir(parents=True, exist_ok=True)
        self._deciding = threading.Lock()
        # The records this process sealed, by place: the commit takes its record from here instead of reading
        # and parsing prepared.json back (which stays the durable copy, read after a restart).
        self._sealed: dict[Path, PartyModelRecord] = {}

    # -- one-step changes: publish and delete ------------------------------------------------------

    def new_staging(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="stage-", dir=self.cache.root / STAGING))

    def publish(self, staged: Path, record: PartyModelRecord, replace: bool) -> None:
        """Rename ``staged`` to the record's version directory and save the record, atomically."""
        ref = record.ref
        if not replace:
            self._refuse_existing(ref)
        target = self.cache.version_dir(ref)
        trash = self._new_trash() if target.exists() else None
        pending = self._journal(target, staged, trash, record)
        faultpoints.reached("agent.publish.journalled")
        self._rename_into_place(staged, target, aside=trash)
        self.metadata.complete(pending.id, record)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)

    def delete(self, ref: PartyModelRef) -> None:
        """Remove a version: journalled, renamed aside, its row deleted, then its files."""
        target = self.cache.version_dir(ref)
        if not target.exists():
            if self.metadata.get(ref) is None:
                raise RegistryError(
                    Reason.MODEL_NOT_FOUND,
                    f"Model {self.cache.relative(target.parent)} {ref.model_version} does not exist.",
                )
            self.metadata.remove(ref, "")  # a row whose files are gone: only the row goes
            return
        trash = self._new_trash()
        pending = self._journal(target, None, trash, None)
        os.rename(target, trash)
        fsync_dir(target.parent)
        self.metadata.remove(ref, pending.id)
        shutil.rmtree(trash, ignore_errors=True)
        with contextlib.suppress(OSError):
            target.parent.rmdir()  # the party model id's directory, when this was its last version

    def _refuse_existing(self, ref: PartyModelRef) -> None:
        if self.cache.has_model(ref):
            raise RegistryError(Reason.MODEL_EXISTS, "Model already exists.")

    def _new_trash(self) -> Path:
        """A fresh name in ``.trash/`` to rename a version directory aside to (not created)."""
        return self.cache.root / TRASH / uuid.uuid4().hex

    def _journal(
        self, target: Path, staged: Path | None, trash: Path | None, record: PartyModelRecord | None
    ) -> PendingPublish:
        """Journal a publish (``staged`` given) or a delete (none) of ``target`` before any rename (:meth:`recover`)."""
        relative = self.cache.relative
        pending = PendingPublish(
            uuid.uuid4().hex,
            relative(target),
            relative(staged) if staged is not None else "",
            relative(trash) if trash is not None else "",
            record,
        )
        self.metadata.add_pending(pending)
        return pending

    def _rename_into_place(self, staged: Path, target: Path, aside: Path | None = None) -> None:
        """Rename ``staged`` to ``target`` durably, the directory at ``target`` first renamed to ``aside`` if given."""
        target.parent.mkdir(parents=True, exist_ok=True)
        if aside is not None:
            os.rename(target, aside)
        os.rename(staged, target)
        fsync_dir(target.parent)
        faultpoints.reached("agent.publish.renamed")

    # -- two-phase changes: prepare, then commit or abort ----------------------------------------

    def place(self, operation_id: str, role: str) -> Path:
        validate_name(operation_id, "operation id")
        return self.cache.root / STAGING / f"prep-{operation_id}-{role}"

    def prepared(self, place: Path) -> PartyModelRecord | None:
        """The record of a prepare that finished already (a retried prepare answers with it)."""
        sealed = self._sealed.get(place)
        if sealed is not None:
            return sealed
        marker = place / PREPARED_MARKER
        return record_from_json(marker.read_text(encoding="utf-8")) if marker.exists() else None

    def start(self, operation_id: str, place: Path) -> Path:
        """A fresh, empty directory to build the version in."""
        self.refuse_if_aborted(operation_id)
        self._sealed.pop(place, None)
        shutil.rmtree(place, ignore_errors=True)
        target = place / "model"
        target.mkdir(parents=True)
        return target

    def seal(
        self,
        operation_id: str,
        place: Path,
        record: PartyModelRecord,
        archive_target: Path | None = None,
        tree_synced: bool = False,
    ) -> None:
        """Mark the built version prepared.

        Its directories are fsynced here, unless ``tree_synced`` says the caller did (while it walked them for the
        manifest).
        """
        self.refuse_if_aborted(operation_id)  # the abort came while this prepare ran late
        if not tree_synced:
            fsync_tree(place / "model")
        faultpoints.reached("agent.prepare.built")
        if archive_target is not None:
            (place / ARCHIVE_TARGET).write_text(str(archive_target), encoding="utf-8")
        # The marker is also the commit's journal (:meth:`recover`): written whole and fsynced under another
        # name, then renamed, so a crash leaves either no marker or a complete one.
        building = place / f"{PREPARED_MARKER}.part"
        write_durably(building, record_to_json(record).encode())
        os.rename(building, place / PREPARED_MARKER)
        fsync_dir(place)
        self._sealed[place] = record

    def commit(self, operation_id: str) -> list[PartyModelRef]:
        """Publish every version this operation prepared here; one already published is skipped."""
        with self._deciding:
            return self._commit(operation_id)

    def _commit(self, operation_id: str) -> list[PartyModelRef]:
        published = []
        for place in self._places(operation_id):
            record = self.prepared(place)
            if record is None:  # a prepare that never finished: nothing to publish
                shutil.rmtree(place, ignore_errors=True)
                continue
            ref = record.ref
            with self.cache.locks.write(self.cache.lock_key(ref)):
                if (place / "model").exists():
                    self._publish_prepared(place / "model", record)
                else:  # renamed into place by a commit that a crash stopped: its record is saved (again)
                    self._save_published(record)
            faultpoints.reached("agent.commit.published")
            target_file = place / ARCHIVE_TARGET
            if target_file.exists() and (place / ARCHIVE).exists():
                target = Path(target_file.read_text(encoding="utf-8"))
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(place / ARCHIVE, target)
                fsync_dir(target.parent)
            shutil.rmtree(place)
            self._sealed.pop(place, None)
            published.append(ref)
        return published

    def _publish_prepared(self, staged: Path, record: PartyModelRecord) -> None:
        """Rename a prepared version to its (new) directory, then save its record.

        Not journalled: the operation's ``prepared.json`` beside ``staged`` is the journal, durable and kept
        until the commit is done, so a crash after the rename is finished from it (:meth:`recover`).
        """
        self._refuse_existing(record.ref)
        self._rename_into_place(staged, self.cache.version_dir(record.ref))
        self.metadata.save(record)

    def _save_published(self, record: PartyModelRecord) -> bool:
        """Save the record of a prepared version that its commit renamed into place; False if it is not there."""
        if not self.cache.has_model(record.ref):
            return False
        self.metadata.save(record)
        return True

    def abort(self, operation_id: str) -> int:
        with self._deciding:
            places = self._places(operation_id)  # validates the id before it names a file
            (self.cache.root / STAGING / f"{ABORTED_PREFIX}{operation_id}").touch()
            for place in places:
                self._sealed.pop(place, None)
                shutil.rmtree(place, ignore_errors=True)
            return len(places)

    def refuse_if_aborted(self, operation_id: str) -> None:
        if (self.cache.root / STAGING / f"{ABORTED_PREFIX}{operation_id}").exists():
            raise RegistryError(Reason.CANCELLED, "the coordinator aborted this operation; nothing was kept")

    def _places(self, operation_id: str) -> list[Path]:
        validate_name(operation_id, "operation id")
        # a plain prefix, not a glob: an id holding '*', '?' or '[' must not match other operations' places
        prefix, staging = f"prep-{operation_id}-", self.cache.root / STAGING
        return sorted(staging / name for name in os.listdir(staging) if name.startswith(prefix))

    # -- after a crash ----------------------------------------------------------------------------

    def recover(self) -> list[str]:
        """Recover from a crash at start-up, before any change.

        Finish or undo the publishes and deletes a crash interrupted, save the record of a version a commit renamed into
        place (the place, and a migration's archive, are left for the coordinator's resent commit to finish), drop
        abandoned staging and trash. Returns what was done.
        """
        with self._deciding:
            done = self._recover_journal()
            done += self._recover_commits()
            self._drop_leftovers()
        return done

    def _recover_journal(self) -> list[str]:
        done = []
        root = self.cache.root
        for pending in self.metadata.pending():
            target, staged = root / pending.target, root / pending.staged
            trash = root / pending.trash if pending.trash else None
            if not pending.staged:  # a delete
                if target.exists():  # stopped before the rename: nothing happened
                    self.metadata.complete(pending.id, None)
                    done.append(f"kept {pending.target}")
                else:
                    self.metadata.remove(ref_of(*pending.target.rsplit("/", 1)), pending.id)
                    if trash is not None:
                        shutil.rmtree(trash, ignore_errors=True)
                    done.append(f"deleted {pending.target}")
                continue
            if staged.exists():
                if trash is not None and trash.exists() and not target.exists():
                    os.rename(trash, target)
                shutil.rmtree(staged, ignore_errors=True)
                self.metadata.complete(pending.id, None)
                done.append(f"rolled back {pending.target}")
            else:
                self.metadata.complete(pending.id, pending.record)
                if trash is not None:
                    shutil.rmtree(trash, ignore_errors=True)
                done.append(f"completed {pending.target}")
        return done

    def _recover_commits(self) -> list[str]:
        done = []
        staging = self.cache.root / STAGING
        for name in sorted(os.listdir(staging)):
            place = staging / name
            if not name.startswith("prep-") or (place / "model").exists():
                continue
            record = self.prepared(place)
            if record is not None and self._save_published(record):
                done.append(f"saved the record of {self.cache.lock_key(record.ref)}, committed before a crash")
        return done

    def _drop_leftovers(self) -> None:
        for sub in (STAGING, TRASH):
            for leftover in (self.cache.root / sub).iterdir():
                if (leftover / PREPARED_MARKER).exists():
                    continue  # a deploy prepared here waits for the coordinator's commit or abort
                if leftover.name.startswith(ABORTED_PREFIX):
                    if time.time() - leftover.stat().st_mtime > ABORTED_KEEP_SECONDS:
                        leftover.unlink()
                    continue
                shutil.rmtree(leftover, ignore_errors=True)
