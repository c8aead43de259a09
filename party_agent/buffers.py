"""A version's component buffers, as ``define/define_meta.yaml``'s proto index lists them."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fate_registry.errors import Reason, RegistryError
from party_agent.manifest import HASH_BLOCK, Manifest

DEFINE_META = "define/define_meta.yaml"
# libyaml's parser and emitter where PyYAML has them: ten times faster than the pure-Python ones.
YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
YAML_DUMPER: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


@dataclass(frozen=True)
class Buffer:
    """A component buffer of the proto index: its component, alias, model name and message class."""

    component: str
    alias: str
    model_name: str
    class_name: str

    @property
    def key(self) -> str:
        """FATE-Serving's name for it: ``<cpn>.<alias>:<ModelName>``."""
        return f"{self.component}.{self.alias}:{self.model_name}"

    @property
    def path(self) -> str:
        return f"variables/data/{self.component}/{self.alias}/{self.model_name}"


def read_define_meta(version_dir: Path) -> dict[str, Any]:
    """The version's ``define_meta.yaml``; a missing or unreadable one is DATA_LOSS."""
    try:
        meta = yaml.load((version_dir / DEFINE_META).read_text(encoding="utf-8"), Loader=YAML_LOADER) or {}
    except FileNotFoundError:
        raise RegistryError(Reason.DATA_LOSS, f"the model has no {DEFINE_META}") from None
    except yaml.YAMLError:
        raise RegistryError(Reason.DATA_LOSS, f"the model's {DEFINE_META} is not valid YAML") from None
    if not isinstance(meta, dict):
        raise RegistryError(Reason.DATA_LOSS, f"the model's {DEFINE_META} is not a mapping")
    return meta


def buffers(version_dir: Path) -> list[Buffer]:
    """Every buffer of the proto index, pipeline included, in the index's order."""
    found = []
    for component, aliases in (read_define_meta(version_dir).get("model_proto") or {}).items():
        for alias, names in (aliases or {}).items():
            for model_name, class_name in (names or {}).items():
                found.append(Buffer(str(component), str(alias), str(model_name), str(class_name)))
    return found


def verified_base64(version_dir: Path, manifest: Manifest, buffer: Buffer) -> Iterator[bytes]:
    """The buffer's file as base64, in pieces, after checking it against the manifest.

    The file is hashed before anything is sent, so a damaged model fails cleanly instead of
    half-way through an answer.
    """
    record = manifest.by_path().get(buffer.path)
    if record is None:
        raise RegistryError(Reason.DATA_LOSS, f"{buffer.path} is listed in the proto index but not in the manifest")
    path = version_dir / buffer.path
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(HASH_BLOCK):
            h.update(block)
    if h.hexdigest() != record.sha256:
        raise RegistryError(Reason.DATA_LOSS, f"{buffer.path} no longer matches its manifest; the model is damaged")
    with path.open("rb") as f:
        while block := f.read(3 * 256 * 1024):  # a multiple of 3: the pieces concatenate to one base64 text
            yield base64.b64encode(block)


def base64_length(size: int) -> int:
    """The length of ``size`` bytes in padded base64."""
    return 4 * ((size + 2) // 3)
