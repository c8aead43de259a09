"""Every operation is written to the catalog's operation log: who, what, per-party results, when."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from fate_registry.errors import RegistryError, Retcode
from fate_registry.v1.common_pb2 import PartyResult
from registry_server.catalog import Catalog


@dataclass
class TrackedOperation:
    operation_id: str
    results: list[PartyResult] = field(default_factory=list)


class OperationLog:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    @contextlib.contextmanager
    def track(self, operation: str, caller: str, model_id: str, model_version: str) -> Iterator[TrackedOperation]:
        op = TrackedOperation(self.catalog.start_operation(operation, caller, model_id, model_version))
        try:
            yield op
        except RegistryError as exc:
            self.catalog.finish_operation(op.operation_id, "failed", op.results, exc.fate_retcode, exc.message)
            raise
        except GeneratorExit:  # the client stopped reading a stream
            self.catalog.finish_operation(
                op.operation_id, "cancelled", op.results, Retcode.OPERATING_ERROR, "the client cancelled the call"
            )
            raise
        except Exception:
            self.catalog.finish_operation(
                op.operation_id, "failed", op.results, Retcode.EXCEPTION_ERROR, "internal error"
            )
            raise
        failed = [r for r in op.results if r.retcode != 0]
        if failed:
            self.catalog.finish_operation(op.operation_id, "failed", op.results, Retcode.ARGUMENT_ERROR, "failed")
        else:
            self.catalog.finish_operation(op.operation_id, "success", op.results, Retcode.SUCCESS, "success")
