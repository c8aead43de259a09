"""The party's ``model_local_cache`` as FATE lays it out.

Where a version lives, which versions are held, the locks that keep a reader and a writer of one version apart, and the
hard links a derived version shares with its source. What changes a version (staging, publish, delete, recovery) is
:mod:`party_agent.lifecycle`'s.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from collections.abc import Collection, Iterator
from pathlib import Path

from fate_registry.errors import RegistryError
from fate_registry.identity import parse_party_model_id, party_model_id, validate_name
from fate_registry.v1.common_pb2 import PartyModelRef
from party_agent.manifest import ARCHIVE_ONLY_FILES


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
    """Bytes and number of the files a version's manifest would list, from their sizes alone.

    The files are :func:`~party_agent.manifest.scan`'s choice: what a version FATE-Flow wrote weighs before it is
    hashed.
    """
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


def ref_of(party_model_id_: str, model_version: str) -> PartyModelRef:
    """The version ``model_version`` of the party model named ``party_model_id_`` (``role#party_id#model_id``)."""
    role, party_id, model_id = parse_party_model_id(party_model_id_)
    return PartyModelRef(role=role, party_id=party_id, model_id=model_id, model_version=model_version)


def party_model_id_of(ref: PartyModelRef) -> str:
    """The name of ``ref``'s party model, ``role#party_id#model_id``: its directory here."""
    return party_model_id(ref.role, ref.party_id, ref.model_id)


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
    """The version directories under ``root``, ``<role>#<party_id>#<model_id>/<model_version>``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.locks = VersionLocks()

    def version_dir(self, ref: PartyModelRef) -> Path:
        for value, what in (
            (ref.role, "role"),
            (ref.party_id, "party_id"),
            (ref.model_id, "model_id"),
            (ref.model_version, "model_version"),
        ):
            validate_name(value, what)
        return self.root / party_model_id_of(ref) / ref.model_version

    @staticmethod
    def lock_key(ref: PartyModelRef) -> str:
        return f"{party_model_id_of(ref)}/{ref.model_version}"

    def has_model(self, ref: PartyModelRef) -> bool:
        """FATE's test: the version directory exists and holds something besides ``.lock``."""
        directory = self.version_dir(ref)
        return directory.is_dir() and any(p.name != ".lock" for p in directory.iterdir())

    def versions(
        self, model_id: str = "", model_version: str = "", skip: Collection[tuple[str, str, str, str]] = ()
    ) -> list[PartyModelRef]:
        """The versions held here (FATE's "model exists") of ``model_id`` and ``model_version`` (empty: any).

        They are found as FATE-Flow's fallback scan of ``<role>#<party_id>#<model_id>/<version>`` finds them: by listing
        directories, no file read. Those whose (role, party id, model id, version) is in ``skip`` are passed over
        unseen, as is a name no path of ours may take.
        """
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

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()
