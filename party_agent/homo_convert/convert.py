"""homo-convert on one party (fate_flow.md §6.14): every convertible component of a version.

The converted files go where FATE puts them, ``variables/data/<cpn>/<alias>/converted_model/``,
and into the version's manifest. Like every change of a version, the conversion is built in
staging (a hard-linked copy of the version: published files are never written in place, so the
links are safe) and published by the journalled rename of :class:`ModelCache`, under the version's
write lock: a failed or interrupted conversion leaves the version as it was, files and manifest.
A component converted again gets a fresh ``converted_model/`` (FATE leaves stale files beside new ones).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fate_registry.errors import Reason, RegistryError, Retcode
from fate_registry.files import fsync_file, fsync_tree
from fate_registry.identity import party_model_id, validate_name
from fate_registry.v1.common_pb2 import PartyModelRef
from party_agent.buffers import read_define_meta
from party_agent.homo_convert import lightgbm_sbt, pytorch_nn, sklearn_lr
from party_agent.homo_convert.buffers import ComponentModel
from party_agent.homo_convert.frameworks import LIGHTGBM, PYTORCH, SKLEARN, canonical, target_for
from party_agent.lifecycle import VersionLifecycle
from party_agent.manifest import FileRecord, Manifest, hash_file
from party_agent.metadata import PartyModelRecord

CONVERTED_DIR = "converted_model"
PIPELINE_COMPONENT = "pipeline"
CONVERTERS: dict[str, Callable[[ComponentModel, Path], list[Path]]] = {
    SKLEARN: sklearn_lr.convert,
    PYTORCH: pytorch_nn.convert,
    LIGHTGBM: lightgbm_sbt.convert,
}


@dataclass(frozen=True)
class Converted:
    """One converted component; paths are relative to the version directory, the main file first."""

    component: str
    alias: str
    framework: str
    files: tuple[str, ...]


@dataclass(frozen=True)
class Conversion:
    """A homo-convert's outcome: the framework asked for, the files each component became, the version's record."""

    framework: str  # the canonical framework asked for, "" for the defaults by module
    converted: tuple[Converted, ...]
    record: PartyModelRecord


def _convertible(directory: Path, manifest: Manifest, requested: str) -> list[tuple[ComponentModel, str]]:
    """Each component and alias a converter takes, with its buffers checked against the manifest."""
    meta = read_define_meta(directory)
    modules = {str(c): str((d or {}).get("module_name", "")) for c, d in (meta.get("component_define") or {}).items()}
    recorded = manifest.by_path()
    found = []
    for component, aliases in (meta.get("model_proto") or {}).items():
        module = modules.get(str(component), "")
        framework = target_for(module, requested) if component != PIPELINE_COMPONENT else ""
        if not framework:
            continue
        for alias, names in (aliases or {}).items():
            buffers = {}
            for name in names or {}:
                for value, what in ((component, "component name"), (alias, "model alias"), (name, "model name")):
                    validate_name(str(value), what)  # they come from the model's define_meta and reach paths
                path = f"variables/data/{component}/{alias}/{name}"
                data = (directory / path).read_bytes() if path in recorded else None
                if data is None or hashlib.sha256(data).hexdigest() != recorded[path].sha256:
                    raise RegistryError(Reason.DATA_LOSS, f"{path} is missing or no longer matches its manifest")
                buffers[str(name)] = data
            found.append((ComponentModel(str(component), str(alias), module, buffers), framework))
    return found


def convert_version(lifecycle: VersionLifecycle, ref: PartyModelRef, framework_name: str) -> Conversion:
    """Convert every convertible component of the version ``ref`` (which must have a record)."""
    requested = canonical(framework_name)
    cache = lifecycle.cache
    with cache.locks.write(cache.lock_key(ref)):
        record = lifecycle.metadata.get(ref)
        if record is None:
            pmid = party_model_id(ref.role, ref.party_id, ref.model_id)
            raise RegistryError(
                Reason.MODEL_NOT_FOUND,
                f"Model {pmid} {ref.model_version} does not exist.",
                retcode=Retcode.EXCEPTION_ERROR,
            )
        source = cache.version_dir(ref)
        components = _convertible(source, record.manifest, requested)
        if not components:
            raise RegistryError(
                Reason.INVALID_ARGUMENT,
                f"No component in model {_name(ref)} can be converted.",
                {"framework_name": requested},
                retcode=Retcode.EXCEPTION_ERROR,
            )
        staging = lifecycle.new_staging()
        try:
            staged = staging / "model"
            shutil.copytree(source, staged, copy_function=os.link, symlinks=True)
            converted = []
            for model, framework in components:
                relative = f"variables/data/{model.component}/{model.alias}/{CONVERTED_DIR}"
                shutil.rmtree(staged / relative, ignore_errors=True)
                (staged / relative).mkdir()
                written = CONVERTERS[framework](model, staged / relative)
                for path in written:
                    fsync_file(path)
                files = tuple(path.relative_to(staged).as_posix() for path in written)
                converted.append(Converted(model.component, model.alias, framework, files))
            fsync_tree(staged)
            replaced = tuple(f"variables/data/{c.component}/{c.alias}/{CONVERTED_DIR}/" for c in converted)
            kept = [r for r in record.manifest.files if not r.path.startswith(replaced)]
            added = [FileRecord(f, *hash_file(staged / f)) for c in converted for f in c.files]
            record = dataclasses.replace(record, manifest=Manifest.of([*kept, *added]))
            lifecycle.publish(staged, record, replace=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return Conversion(requested, tuple(converted), record)


def _name(ref: PartyModelRef) -> str:
    return f"{party_model_id(ref.role, ref.party_id, ref.model_id)}:{ref.model_version}"
