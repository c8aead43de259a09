"""The party's ``model_local_cache``: FATE's layout, staged writes, atomic publish, crash recovery.

A new or replaced version is built in ``.staging/`` (same filesystem), fsynced, then renamed into
place. Each publish is journalled in the metadata database first, so a restarted agent finishes
or undoes a publish that a crash interrupted: the version directory and its model row always agree.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Collection, Iterator
from pathlib import Path

from fate_registry import faultpoints
from fate_registry.errors import Reason, RegistryError
from fate_registry.files import fsync_dir
from fate_registry.identity import parse_party_model_id, party_model_id, validate_name
from fate_registry.v1.common_pb2 import PartyModelRef
from party_agent.manifest import ARCHIVE_ONLY_FILES
from party_agent.metadata import MetadataStore, PartyModelRecord, PendingPublish

STAGING = ".staging"
TRASH = ".trash"
# Marks a staged directory that a two-phase operation prepared: kept across restarts.
PREPARED_MARKER = "prepared.json"
# Remembers an aborted two-phase operation in staging, so a prepare arriving late does not stay.
ABORTED_PREFIX = "aborted-"
ABORTED_KEEP_SECONDS = 7 * 24 * 3600


def link_files(source: Path, target: Path, skip: frozenset[str] = frozenset({".lock"})) -> None:
    """Give the new directory ``target`` the tree of ``source``, its files hard-linked, not copied.

    Published model files never change in place (every write is staged and renamed), so a version
    built in staging may share them with the version it derives from; their bytes are durable
    already, only the new directories need an fsync. A file that cannot be linked (a symlink, a
    filesystem without hard links, too many links) is copied. Names in ``skip`` are left out.
    """
    os.makedirs(target)
    _link_tree(os.fspath(source), os.fspath(target), skip)


def _link_tree(source: str, target: str, skip: frozenset[str]) -> None:
    """:func:`link_files` below the existing ``target``, on plain strings (a deploy links a dozen directories)."""
    with os.scandir(source) as entries:
        for entry in entries:
            if entry.name in skip:
                continue
            into = os.path.join(target, entry.name)
            if entry.is_dir(follow_symlinks=False):
                os.mkdir(into)
                _link_tree(entry.path, into, skip)
            elif entry.is_file(follow_symlinks=False):
                link_file(entry.path, into)
            elif entry.is_dir():
                shutil.copytree(entry.path, into, ignore=shutil.ignore_patterns(*skip))
            else:
                shutil.copy2(entry.path, into)


def link_file(source: str | Path, target: str | Path) -> None:
    """Hard-link one published file into a staged version (see :func:`link_files`), else copy it."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def files_size(version_dir: Path) -> tuple[int, int]:
    """Bytes and number of the files a version's manifest would list (:func:`~party_agent.manifest.scan`'s
    choice), from their sizes alone: what a version FATE-Flow wrote weighs before it is hashed."""
    size = count = 0
    top = os.fspath(version_dir)
    for root, _dirs, files in os.walk(top):
        for name in files:
            if root == top and name in ARCHIVE_ONLY_FILES:
                continue
            with contextlib.suppress(FileNotFoundError):
                size += os.stat(os.path.join(root, name)).st_size
                count += 1
    return size, count


def _ref_of(relative_target: str) -> PartyModelRef:
    pmid, _, version = relative_target.rpartition("/")
    role, party_id, model_id = parse_party_model_id(pmid)
    return PartyModelRef(role=role, party_id=party_id, model_id=model_id, model_version=version)


class VersionLocks:
    """Readers-writer locks per version directory: exports read while no import replaces it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers: dict[str, int] = {}
        self._writers: set[str] = set()

    @contextlib.contextmanager
    def read(self, key: str) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: key not in self._writers)
            self._readers[key] = self._readers.get(key, 0) + 1
        try:
            yield
        finally:
            with self._cond:
                self._readers[key] -= 1
                if not self._readers[key]:
                    del self._readers[key]
                self._cond.notify_all()

    @contextlib.contextmanager
    def write(self, key: str) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: key not in self._writers and not self._readers.get(key))
            self._writers.add(key)
        try:
            yield
        finally:
            with self._cond:
                self._writers.discard(key)
                self._cond.notify_all()


class ModelCache:
    def __init__(self, root: Path, store: MetadataStore) -> None:
        self.root = root
        self.store = store
        self.locks = VersionLocks()
        for sub in (STAGING, TRASH):
            (root / sub).mkdir(parents=True, exist_ok=True)

    def version_dir(self, ref: PartyModelRef) -> Path:
        for value, what in (
            (ref.role, "role"),
            (ref.party_id, "party_id"),
            (ref.model_id, "model_id"),
            (ref.model_version, "model_version"),
        ):
            validate_name(value, what)
        return self.root / party_model_id(ref.role, ref.party_id, ref.model_id) / ref.model_version

    @staticmethod
    def lock_key(ref: PartyModelRef) -> str:
        return f"{party_model_id(ref.role, ref.party_id, ref.model_id)}/{ref.model_version}"

    def has_model(self, ref: PartyModelRef) -> bool:
        """FATE's test: the version directory exists and holds something besides ``.lock``."""
        directory = self.version_dir(ref)
        return directory.is_dir() and any(p.name != ".lock" for p in directory.iterdir())

    def versions(
        self, model_id: str = "", model_version: str = "", skip: Collection[tuple[str, str, str, str]] = ()
    ) -> list[PartyModelRef]:
        """The versions held here (FATE's "model exists") of ``model_id`` and ``model_version`` (empty: any),
        found as FATE-Flow's fallback scan of ``<role>#<party_id>#<model_id>/<version>`` finds them: by
        listing directories, no file read. Those whose (role, party id, model id, version) is in ``skip``
        are passed over unseen, as is a name no path of ours may take."""
        found = []
        for name in sorted(os.listdir(self.root)):
            try:
                role, party_id, held_model_id = parse_party_model_id(name)
            except RegistryError:
                continue  # staging, trash, or what is not a party model's directory
            if model_id and held_model_id != model_id:
                continue
            try:
                versions = [model_version] if model_version else sorted(os.listdir(self.root / name))
            except OSError:  # a file, or a directory removed meanwhile
                continue
            for version in versions:
                if (role, party_id, held_model_id, version) in skip:
                    continue
                ref = PartyModelRef(role=role, party_id=party_id, model_id=held_model_id, model_version=version)
                try:
                    if self.has_model(ref):
                        found.append(ref)
                except (RegistryError, OSError):  # an invalid name, or a directory removed meanwhile
                    continue
        return found

    def new_staging(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="stage-", dir=self.root / STAGING))

    def publish(self, staged: Path, record: PartyModelRecord, replace: bool) -> None:
        """Rename ``staged`` to the record's version directory and save the record, atomically."""
        ref = PartyModelRef(
            role=record.role, party_id=record.party_id, model_id=record.model_id, model_version=record.model_version
        )
        target = self.version_dir(ref)
        trash = self.root / TRASH / uuid.uuid4().hex
        exists = self.has_model(ref)
        if exists and not replace:
            raise RegistryError(Reason.MODEL_EXISTS, "Model already exists.")
        pending = PendingPublish(
            uuid.uuid4().hex,
            self.relative(target),
            self.relative(staged),
            self.relative(trash) if target.exists() else "",
            record,
        )
        self.store.add_pending(pending)
        faultpoints.reached("agent.publish.journalled")
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            os.rename(target, trash)
        os.rename(staged, target)
        fsync_dir(target.parent)
        faultpoints.reached("agent.publish.renamed")
        self.store.complete(pending.id, record)
        shutil.rmtree(trash, ignore_errors=True)

    def publish_prepared(self, staged: Path, record: PartyModelRecord) -> None:
        """Rename a version that a two-phase operation prepared to its (new) directory, then save its record.

        Not journalled: the operation's ``prepared.json`` beside ``staged`` is the journal, durable and kept
        until the commit is done, so a crash after the rename is finished from it (:meth:`TwoPhase.recover`).
        """
        ref = PartyModelRef(
            role=record.role, party_id=record.party_id, model_id=record.model_id, model_version=record.model_version
        )
        if self.has_model(ref):
            raise RegistryError(Reason.MODEL_EXISTS, "Model already exists.")
        target = self.version_dir(ref)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staged, target)
        fsync_dir(target.parent)
        faultpoints.reached("agent.publish.renamed")
        self.store.save(record)

    def delete(self, ref: PartyModelRef) -> None:
        """Remove a version: journalled, renamed aside, its row deleted, then its files."""
        target = self.version_dir(ref)
        if not target.exists():
            if self.store.get(ref) is None:
                raise RegistryError(
                    Reason.MODEL_NOT_FOUND, f"Model {self.relative(target.parent)} {ref.model_version} does not exist."
                )
            self.store.remove(ref, "")  # a row whose files are gone: only the row goes
            return
        trash = self.root / TRASH / uuid.uuid4().hex
        pending = PendingPublish(uuid.uuid4().hex, self.relative(target), "", self.relative(trash), None)
        self.store.add_pending(pending)
        os.rename(target, trash)
        fsync_dir(target.parent)
        self.store.remove(ref, pending.id)
        shutil.rmtree(trash, ignore_errors=True)
        with contextlib.suppress(OSError):
            target.parent.rmdir()  # the party model id's directory, when this was its last version

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def recover(self) -> list[str]:
        """Finish or undo publishes a crash interrupted; drop abandoned staging. Returns what was done."""
        done = []
        for pending in self.store.pending():
            target, staged = self.root / pending.target, self.root / pending.staged
            trash = self.root / pending.trash if pending.trash else None
            if not pending.staged:  # a delete
                if target.exists():  # stopped before the rename: nothing happened
                    self.store.complete(pending.id, None)
                    done.append(f"kept {pending.target}")
                else:
                    self.store.remove(_ref_of(pending.target), pending.id)
                    if trash is not None:
                        shutil.rmtree(trash, ignore_errors=True)
                    done.append(f"deleted {pending.target}")
                continue
            if staged.exists():
                if trash is not None and trash.exists() and not target.exists():
                    os.rename(trash, target)
                shutil.rmtree(staged, ignore_errors=True)
                self.store.complete(pending.id, None)
                done.append(f"rolled back {pending.target}")
            else:
                self.store.complete(pending.id, pending.record)
                if trash is not None:
                    shutil.rmtree(trash, ignore_errors=True)
                done.append(f"completed {pending.target}")
        for sub in (STAGING, TRASH):
            for leftover in (self.root / sub).iterdir():
                if (leftover / PREPARED_MARKER).exists():
                    continue  # a deploy prepared here waits for the coordinator's commit or abort
                if leftover.name.startswith(ABORTED_PREFIX):
                    if time.time() - leftover.stat().st_mtime > ABORTED_KEEP_SECONDS:
                        leftover.unlink()
                    continue
                shutil.rmtree(leftover, ignore_errors=True)
        return done
