"""The coordinator's background duties, run every minute: settle abandoned one-hop transfers,
resend deploy decisions that a party has not acknowledged yet."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)
PERIOD_SECONDS = 60.0


class Maintenance:
    def __init__(self, duties: Sequence[Callable[[], None]], period: float = PERIOD_SECONDS) -> None:
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
                    log.error("maintenance duty failed: %s", exc.__class__.__name__)
