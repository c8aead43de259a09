"""The coordinator's background duties, run every ``coordinator.maintenance_period`` seconds.

Settle abandoned one-hop transfers, resend two-phase decisions a party has not confirmed yet.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from fate_registry.errors import RegistryError

log = logging.getLogger(__name__)


class Maintenance:
    """A daemon thread that runs ``duties`` every ``period`` seconds until :meth:`stop`."""

    def __init__(self, duties: Sequence[Callable[[], None]], period: float) -> None:
        self._duties = list(duties)
        self._period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="maintenance", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            for duty in self._duties:
                try:
                    duty()
                except Exception as exc:  # a database hiccup must not end the duties
                    # a RegistryError says what failed (the catalog database, unreachable); others only their class
                    said = exc.message if isinstance(exc, RegistryError) else exc.__class__.__name__
                    log.error("maintenance duty failed: %s", said)
