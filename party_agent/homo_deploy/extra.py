"""homo-deploy's clients (Kubernetes, S3/MinIO) are the optional extra ``[deploy]``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from fate_registry.errors import Reason, RegistryError, Retcode

EXTRA = "deploy"


@contextlib.contextmanager
def needs_deploy_extra() -> Iterator[None]:
    """Import homo-deploy's clients inside this block: a missing one is a clear error naming the extra."""
    try:
        yield
    except ImportError as exc:
        missing = exc.name or "of the extra"
        raise RegistryError(
            Reason.NOT_IMPLEMENTED,
            f"homo-deploy needs the {EXTRA} extra: pip install 'fate-registry[{EXTRA}]' "
            f"(this agent does not have the Python package {missing})",
            {"missing": missing},
            retcode=Retcode.EXCEPTION_ERROR,
        ) from None
