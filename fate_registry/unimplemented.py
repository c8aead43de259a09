"""Answer UNIMPLEMENTED, with a clear message, for every RPC a servicer does not implement yet."""

from __future__ import annotations

from typing import Any, NoReturn, TypeVar

from google.protobuf.descriptor import ServiceDescriptor

from fate_registry.errors import Reason, RegistryError

T = TypeVar("T", bound=type)


def fill_unimplemented(servicer_cls: T, service: ServiceDescriptor, base: type) -> T:
    """Replace the generated "Method not implemented!" defaults that ``servicer_cls`` inherits."""
    for method in service.methods:
        if getattr(servicer_cls, method.name) is getattr(base, method.name):
            setattr(servicer_cls, method.name, _refuse(service.name, method.name))
    return servicer_cls


def _refuse(service: str, method: str) -> Any:
    def refuse(self: Any, request: Any, context: Any) -> NoReturn:
        raise RegistryError(
            Reason.NOT_IMPLEMENTED,
            f"{service}.{method} is not implemented in this release of the registry yet",
            {"method": method},
        )

    return refuse
