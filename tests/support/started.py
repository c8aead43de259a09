"""Every federation the tests started, so that a check after each test can see that its catalog and its
parties agree (``tests/faults/state.py``), whichever test started it and however it ended."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol


class StartedFederation(Protocol):
    """What the check reads: the files of a federation laid out as :class:`Cluster` and ``fate-registry up``
    lay them out (``<data_dir>/coordinator/registry.db``, ``<data_dir>/parties/<id>/``)."""

    @property
    def data_dir(self) -> Path: ...

    @property
    def parties(self) -> tuple[str, ...]: ...

    def model_cache(self, party_id: str) -> Path: ...

    def running(self) -> bool: ...


STARTED: list[tuple[StartedFederation, str]] = []
"""Each with the test that started it (pytest's ``PYTEST_CURRENT_TEST``), in the order they were started;
a check forgets those that have stopped once it has read them."""


def register(federation: StartedFederation) -> None:
    STARTED.append((federation, os.environ.get("PYTEST_CURRENT_TEST", "")))
