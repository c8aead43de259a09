"""A component's model buffers, read for a conversion and parsed by their exact FATE keys."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from google.protobuf.message import DecodeError, Message

from fate_registry.errors import Reason, RegistryError, Retcode

M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class ComponentModel:
    """One component and alias: its module and its buffers (model_name → raw bytes)."""

    component: str
    alias: str
    module: str
    buffers: Mapping[str, bytes]

    def parse(self, model_name: str, message: type[M]) -> M:
        """The buffer FATE's converter reads by this exact key (no suffix matching, as in FATE)."""
        data = self.buffers.get(model_name)
        if data is None:
            raise self.error(f"has no {model_name} buffer, which a {self.module} conversion reads")
        parsed = message()
        try:
            parsed.ParseFromString(data)
        except DecodeError:
            raise RegistryError(
                Reason.DATA_LOSS, f"component {self.component}: {model_name} is not a valid {message.__name__} buffer"
            ) from None
        return parsed

    def error(self, what: str) -> RegistryError:
        return RegistryError(
            Reason.INVALID_ARGUMENT,
            f"component {self.component} ({self.module}) cannot be converted: it {what}",
            {"component_name": self.component},
            retcode=Retcode.EXCEPTION_ERROR,
        )
