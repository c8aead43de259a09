"""Two-phase changes on one party: prepare a version in staging, then commit or abort it.

A prepared version lives in ``.staging/prep-<operation>-<role>/model`` with ``prepared.json`` (its
record) beside it, and optionally ``archive.zip`` to be moved to a destination at commit; nothing
is visible until the commit publishes it through the journalled rename of :class:`ModelCache`.
Commit and abort are idempotent and run one at a time (the coordinator's maintenance loop may resend
a decision while the first sending is still being carried out); a prepared version survives an
agent restart, so the coordinator alone decides its fate (DESIGN §5.1). An abort is remembered, so
a prepare that arrives after it leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

from fate_registry import faultpoints
from fate_registry.errors import Reason, RegistryError
from fate_registry.files import fsync_dir, fsync_tree, write_durably
from fate_registry.identity import validate_name
from fate_registry.v1.common_pb2 import PartyModelRef
from party_agent.metadata import PartyModelRecord, record_from_json, record_to_json
from party_agent.model_cache import ABORTED_PREFIX, PREPARED_MARKER, STAGING, ModelCache

ARCHIVE = "archive.zip"
ARCHIVE_TARGET = "archive_target"


def _ref(record: PartyModelRecord) -> PartyModelRef:
    return PartyModelRef(
        role=record.role, party_id=record.party_id, model_id=record.model_id, model_version=record.model_version
    )


class TwoPhase:
    def __init__(self, cache: ModelCache) -> None:
        self.cache = cache
        self._deciding = threading.Lock()
        # The records this process sealed, by place: the commit takes its record from here instead of reading
        # and parsing prepared.json back (which stays the durable copy, read after a restart).
        self._sealed: dict[Path, PartyModelRecord] = {}

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
        """Mark the built version prepared. Its directories are fsynced here, unless ``tree_synced`` says
        the caller did (while it walked them for the manifest)."""
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
            ref = _ref(record)
            with self.cache.locks.write(self.cache.lock_key(ref)):
                if (place / "model").exists():
                    self.cache.publish_prepared(place / "model", record)
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

    def _save_published(self, record: PartyModelRecord) -> bool:
        """Save the record of a prepared version that its commit renamed into place; False if it is not there."""
        if not self.cache.has_model(_ref(record)):
            return False
        self.cache.store.save(record)
        return True

    def recover(self) -> list[str]:
        """At start-up: a commit that a crash stopped after renaming a version into place gets its record
        saved, so the version and its row agree at once; the place (and a migration's archive) is left for
        the coordinator's resent commit to finish. Returns what was done."""
        done = []
        with self._deciding:
            staging = self.cache.root / STAGING
            for name in sorted(os.listdir(staging)):
                place = staging / name
                if not name.startswith("prep-") or (place / "model").exists():
                    continue
                record = self.prepared(place)
                if record is not None and self._save_published(record):
                    done.append(f"saved the record of {self.cache.lock_key(_ref(record))}, committed before a crash")
        return done

    def abort(self, operation_id: str) -> int:
        with self._deciding:
            return self._abort(operation_id)

    def _abort(self, operation_id: str) -> int:
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
