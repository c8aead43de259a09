"""A component's checkpoints inside one party model version directory, read as FATE-Flow reads them.

Layout (FATE-Flow's ``CheckpointManager``)::

    <version_dir>/checkpoint/<component>/<step_index>#<step_name>/
        <model_name>.pb       raw protobuf bytes of one buffer
        <model_name>.json     its JSON rendering (FATE 1.9+; 1.7-1.8 did not write it)
        database.yaml         step_index, step_name, create_time, models: {name: {sha1, buffer_name}}
        .lock                 FATE's file lock

``database.yaml`` is written last, so it is the commit marker: a directory without it is a
checkpoint being written (or abandoned) and is not listed. The directory name is split at the first
``#``, so a step name may itself contain ``#``.

Where FATE-Flow's behaviour is an accident, we keep its intent and say so:

- A committed checkpoint whose ``database.yaml`` disagrees with its directory name, or cannot be
  parsed, makes FATE's ``list`` fail (``ValueError``); here it fails too, with a DATA_LOSS error
  naming the file, rather than hiding a damaged checkpoint from the list.
- A SHA-1 mismatch makes FATE raise ``KeyError('filepath')``; here it is a DATA_LOSS error naming
  the file and both digests.
- Deploy's checkpoint substitution for a component without checkpoints is silently ignored by FATE;
  here it is refused (see :func:`substitute_checkpoint`).
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import yaml

from fate_registry.direct_io import DirectWriter
from fate_registry.errors import Reason, RegistryError
from fate_registry.files import fsync_dir
from fate_registry.identity import validate_name
from fate_registry.v1.common_pb2 import Checkpoint, CheckpointBuffer
from party_agent.buffers import YAML_LOADER

CHECKPOINT_DIR = "checkpoint"
DATABASE_FILE = "database.yaml"
MAX_CHECKPOINT_BYTES = 64 * 1024 * 1024
"""The most buffer bytes :func:`read_checkpoint` returns: they travel whole (base64) in one answer."""
HASH_BLOCK = 1024 * 1024
NOT_FOUND_MESSAGE = "The checkpoint was not found."

_STEP_INDEX = re.compile(r"-?[0-9]+")


class BufferDigest(NamedTuple):
    """One model of a checkpoint as ``database.yaml`` records it."""

    buffer_name: str
    """The protobuf class of the buffer, e.g. ``LRModelParam``."""
    sha1: str


@dataclass(frozen=True)
class CheckpointInfo:
    """One checkpoint of a component, as its ``database.yaml`` records it."""

    step_index: int
    step_name: str
    create_time: str
    """As stored: FATE writes ``datetime.utcnow().isoformat()``, a naive UTC time."""
    models: dict[str, BufferDigest]
    """Model name → buffer class and SHA-1, in ``database.yaml``'s order."""

    def to_proto(self) -> Checkpoint:
        """The API message; ``create_time`` is read as UTC, as FATE writes it."""
        proto = Checkpoint(
            step_index=self.step_index,
            step_name=self.step_name,
            models={name: CheckpointBuffer(buffer_name=d.buffer_name, sha1=d.sha1) for name, d in self.models.items()},
        )
        created = datetime.datetime.fromisoformat(self.create_time)
        if created.tzinfo is None:
            created = created.replace(tzinfo=datetime.UTC)
        proto.create_time.FromDatetime(created)
        return proto


@dataclass(frozen=True)
class _Place:
    """Where a checkpoint directory is; errors name paths relative to the version, never the agent's own."""

    version_dir: Path
    directory: Path

    def shown(self, path: Path) -> str:
        return path.relative_to(self.version_dir).as_posix()


@dataclass(frozen=True)
class _Located:
    info: CheckpointInfo
    place: _Place

    @property
    def directory(self) -> Path:
        return self.place.directory


def list_checkpoints(version_dir: Path, component: str) -> list[CheckpointInfo]:
    """The committed checkpoints of ``component``, sorted by step index; empty when it has none."""
    return [c.info for c in _load(version_dir, component)]


def read_checkpoint(
    version_dir: Path,
    component: str,
    step_index: int | None,
    step_name: str | None,
    max_bytes: int = MAX_CHECKPOINT_BYTES,
) -> tuple[CheckpointInfo, dict[str, bytes]]:
    """One checkpoint and its buffers (model name → raw protobuf bytes), every SHA-1 verified.

    Exactly one of ``step_index`` and ``step_name`` must be given (None means absent). A checkpoint
    whose buffers total more than ``max_bytes`` is refused (RESOURCE_EXHAUSTED), since the answer
    carries them whole.
    """
    located = _choose(_load(version_dir, component), step_index, step_name)
    paths = {name: located.directory / f"{name}.pb" for name in located.info.models}
    if sum(_size(located.place, path) for path in paths.values()) > max_bytes:
        raise _too_large(located.place, max_bytes)
    buffers: dict[str, bytes] = {}
    budget = max_bytes
    for name, path in paths.items():
        data = bytearray()
        with _open_buffer(located.place, path) as f:
            # Bounded again while reading, in case a file grew since it was measured.
            digest = _copy_hashing(f, data.extend, budget)
        if digest is None:
            raise _too_large(located.place, max_bytes)
        _check_digest(located.place, path, located.info.models[name].sha1, digest)
        budget -= len(data)
        buffers[name] = bytes(data)
    return located.info, buffers


def substitute_checkpoint(
    child_dir: Path,
    source_dir: Path,
    component: str,
    alias: str,
    step_index: int | None,
    step_name: str | None,
) -> list[str]:
    """Deploy's checkpoint substitution (FATE-Flow §6.9 step 10) on a *staged* child version directory.

    The checkpoint of ``component`` chosen by exactly one of ``step_index``/``step_name`` in
    ``source_dir`` (the parent version) replaces ``variables/data/<component>/<alias>/`` of
    ``child_dir``: ``<name>.pb`` becomes ``<name>``, ``<name>.json`` (when present) and
    ``database.yaml`` are copied, dot-files and anything else are left out. The proto index is
    not rewritten, so the checkpoint's models (names and buffer classes) must be exactly those the
    child's ``define/define_meta.yaml`` records for that component and alias.

    Unlike FATE-Flow, which silently ignores the request when the component has no checkpoints,
    this refuses it (NOT_FOUND): whoever asked for a checkpoint expects the deployed model to be
    that checkpoint. The new content is built in a sibling directory, each file fsynced and its
    SHA-1 checked as it is copied; only then does it replace the alias directory, so on any error
    the child is left as it was. Returns the paths written, relative to ``child_dir``, sorted.
    """
    validate_name(alias, "model alias")
    checkpoints = _load(source_dir, component)
    if not checkpoints:
        raise RegistryError(
            Reason.MODEL_NOT_FOUND,
            f"component {component!r} has no checkpoints to deploy; deploy it without choosing a checkpoint",
            retcode=404,
        )
    located = _choose(checkpoints, step_index, step_name)
    _check_proto_index(child_dir, component, alias, located.info)

    alias_dir = child_dir / "variables" / "data" / component / alias
    alias_dir.parent.mkdir(parents=True, exist_ok=True)
    building = alias_dir.with_name(f".{alias}.checkpoint")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir()
    written: list[str] = []
    try:
        for name, digest in located.info.models.items():
            source = located.directory / f"{name}.pb"
            with _open_buffer(located.place, source) as src:
                _check_digest(located.place, source, digest.sha1, _write_durably(building / name, src))
            written.append(name)
            sidecar = located.directory / f"{name}.json"
            if sidecar.is_file():
                with sidecar.open("rb") as src:
                    _write_durably(building / sidecar.name, src)
                written.append(sidecar.name)
        with (located.directory / DATABASE_FILE).open("rb") as src:
            _write_durably(building / DATABASE_FILE, src)
        written.append(DATABASE_FILE)
        fsync_dir(building)
        if alias_dir.exists():
            shutil.rmtree(alias_dir)
        building.rename(alias_dir)
        fsync_dir(alias_dir.parent)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return sorted((alias_dir / name).relative_to(child_dir).as_posix() for name in written)


# -- loading ------------------------------------------------------------------------------------


def _load(version_dir: Path, component: str) -> list[_Located]:
    validate_name(component, "component_name")
    root = version_dir / CHECKPOINT_DIR / component
    if not root.is_dir():
        return []
    found = []
    for directory in root.iterdir():
        if "#" not in directory.name or not directory.is_dir() or not (directory / DATABASE_FILE).is_file():
            continue
        index_text, name = directory.name.split("#", 1)
        place = _Place(version_dir, directory)
        if not _STEP_INDEX.fullmatch(index_text):
            raise _damaged(place, f"its step index {index_text!r} is not an integer")
        found.append(_Located(_read_database(place, int(index_text), name), place))
    # FATE sorts by step index alone (stable on an unordered glob); the name breaks ties here.
    return sorted(found, key=lambda c: (c.info.step_index, c.info.step_name))


def _read_database(place: _Place, step_index: int, step_name: str) -> CheckpointInfo:
    path = place.directory / DATABASE_FILE
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=YAML_LOADER)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise _damaged(place, f"{DATABASE_FILE} is not valid YAML") from exc
    if not isinstance(data, dict):
        raise _damaged(place, f"{DATABASE_FILE} is not a mapping")
    stored_index, stored_name = data.get("step_index"), data.get("step_name")
    if stored_index != step_index or stored_name != step_name or isinstance(stored_index, bool):
        raise _damaged(
            place,
            f"{DATABASE_FILE} records step_index {stored_index!r} and step_name {stored_name!r}, "
            "which do not match the directory name",
        )
    create_time = data.get("create_time")
    if isinstance(create_time, datetime.datetime):  # an unquoted timestamp, as a YAML writer may leave it
        create_time = create_time.isoformat()
    if not isinstance(create_time, str) or not _is_iso_time(create_time):
        raise _damaged(place, f"{DATABASE_FILE} has no ISO create_time")
    return CheckpointInfo(step_index, step_name, create_time, _models(place, data.get("models")))


def _is_iso_time(text: str) -> bool:
    try:
        datetime.datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _models(place: _Place, raw: Any) -> dict[str, BufferDigest]:
    if not isinstance(raw, dict) or not raw:
        raise _damaged(place, f"{DATABASE_FILE} lists no models")
    models = {}
    for name, entry in raw.items():
        if not isinstance(name, str) or not isinstance(entry, dict):
            raise _damaged(place, f"{DATABASE_FILE} has a malformed models entry {name!r}")
        try:
            validate_name(name, "model name")
        except RegistryError as exc:
            raise _damaged(place, exc.message) from None
        sha1, buffer_name = entry.get("sha1"), entry.get("buffer_name")
        if not isinstance(sha1, str) or not isinstance(buffer_name, str):
            raise _damaged(place, f"{DATABASE_FILE} lacks the sha1 or buffer_name of model {name!r}")
        models[name] = BufferDigest(buffer_name, sha1.lower())
    return models


def _choose(checkpoints: list[_Located], step_index: int | None, step_name: str | None) -> _Located:
    """By index or by name; with duplicates the last in list order wins, as in FATE's ``OrderedDict``."""
    if (step_index is None) == (step_name is None):
        message = (
            "'step_index' or 'step_name' is required"
            if step_index is None
            else "give either 'step_index' or 'step_name', not both"
        )
        raise RegistryError(Reason.INVALID_ARGUMENT, message, retcode=400)
    if step_index is not None:
        matches = [c for c in checkpoints if c.info.step_index == step_index]
    else:
        matches = [c for c in checkpoints if c.info.step_name == step_name]
    if not matches:
        raise RegistryError(Reason.MODEL_NOT_FOUND, NOT_FOUND_MESSAGE, retcode=404)
    return matches[-1]


def _check_proto_index(child_dir: Path, component: str, alias: str, info: CheckpointInfo) -> None:
    """The checkpoint's models must be those the proto index records, since it is not rewritten."""
    path = child_dir / "define" / "define_meta.yaml"
    try:
        define_meta = yaml.load(path.read_text(encoding="utf-8"), Loader=YAML_LOADER)
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        problem = "is missing" if isinstance(exc, FileNotFoundError) else f"cannot be read ({exc.__class__.__name__})"
        raise RegistryError(Reason.DATA_LOSS, f"the deployed model's define/define_meta.yaml {problem}") from None
    proto_index = _lookup(define_meta, "model_proto", component, alias)
    if not isinstance(proto_index, dict):
        raise RegistryError(
            Reason.INVALID_ARGUMENT,
            f"the deployed model has no buffers of component {component!r} alias {alias!r} to replace by a checkpoint",
        )
    recorded = {name: digest.buffer_name for name, digest in info.models.items()}
    if recorded != proto_index:
        raise RegistryError(
            Reason.INVALID_ARGUMENT,
            f"checkpoint {info.step_index}#{info.step_name} of component {component!r} holds models {recorded}, "
            f"but the model's proto index for alias {alias!r} records {proto_index}; it cannot replace them",
        )


def _lookup(document: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document


# -- bytes --------------------------------------------------------------------------------------


def _missing(place: _Place, path: Path) -> RegistryError:
    shown = place.shown(path)
    return RegistryError(
        Reason.DATA_LOSS, f"the checkpoint is incomplete: its protobuf file {shown} is missing", {"file": shown}
    )


def _open_buffer(place: _Place, path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise _missing(place, path) from None


def _size(place: _Place, path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        raise _missing(place, path) from None


def _copy_hashing(src: BinaryIO, sink: Callable[[bytes], object], limit: int | None = None) -> str | None:
    """Pass ``src``'s bytes to ``sink`` block by block and return their SHA-1, or None past ``limit`` bytes."""
    sha1 = hashlib.sha1(usedforsecurity=False)
    copied = 0
    while block := src.read(HASH_BLOCK):
        copied += len(block)
        if limit is not None and copied > limit:
            return None
        sha1.update(block)
        sink(block)
    return sha1.hexdigest()


def _write_durably(target: Path, src: BinaryIO) -> str:
    """Copy ``src`` into the new file ``target``, fsynced; return the SHA-1 of what was copied."""
    with target.open("xb", buffering=0) as out, DirectWriter(out.fileno()) as writer:
        digest = _copy_hashing(src, writer.write)
        writer.finish()
        os.fsync(out.fileno())
    assert digest is not None  # no limit was given
    return digest


def _check_digest(place: _Place, path: Path, expected: str, actual: str) -> None:
    if actual != expected:
        shown = place.shown(path)
        raise RegistryError(
            Reason.DATA_LOSS,
            f"checkpoint file {shown} is damaged: its SHA-1 is {actual}, but {DATABASE_FILE} records {expected}",
            {"file": shown},
        )


def _damaged(place: _Place, what: str) -> RegistryError:
    shown = place.shown(place.directory)
    return RegistryError(Reason.DATA_LOSS, f"checkpoint {shown} is damaged: {what}", {"file": shown})


def _too_large(place: _Place, limit: int) -> RegistryError:
    return RegistryError(
        Reason.ARCHIVE_TOO_LARGE,
        f"checkpoint {place.shown(place.directory)} holds more than {limit} bytes of buffers, "
        "more than one answer may carry",
    )
