"""Every federation the tests started, so that a check after each test can see that its catalog and its
parties agree (``tests/faults/state.py``), whichever test started it and however it ended."""

from __future__ import annotations

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


STARTED: list[StartedFederation] = []
"""In the order they were started; a check forgets those that have stopped once it has read them."""
