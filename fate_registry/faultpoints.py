"""Test-only fault points: a process stops itself at a named phase, so a fault test can act there.

Off by default. When the environment variable ``FATE_REGISTRY_FAULTPOINT`` names a point, the process
that reaches it sends itself SIGSTOP: the test sees it stopped (``/proc/<pid>/stat``) and then kills
it (kill -9 at exactly that phase), or leaves it hanging past a deadline and resumes it (SIGCONT).
Nothing else changes. The points, each placed where a crash leaves a distinct state on disk:

- ``agent.prepare.built``: a deploy's or migrate's version is built in staging, not yet marked prepared
- ``agent.commit.published``: a prepared version is renamed into place, its staging not yet removed
- ``agent.publish.journalled``: a publish is in the agent's journal, nothing renamed yet
- ``agent.publish.renamed``: the version directory is in place, the journal entry not yet completed
- ``agent.import.receiving``: an import has received its first chunk, not the rest
- ``agent.store.writing``: a store has written its first chunk to the engine, not the rest
- ``coordinator.two_phase.preparing`` / ``.committing`` / ``.committed``: the plan or decision is
  in the operation log, not yet sent; or the commit is confirmed, the catalog not yet written
- ``coordinator.import.answered``: the party imported the version, the catalog does not know it yet
- ``coordinator.delete.answered``: the party deleted the version, the catalog still lists it
- ``agent.delete.store_deleted``: the model store's copy is deleted, the local one not yet
- ``coordinator.transfer.reported``: the agent reported a one-hop transfer done, the catalog does not
  know it yet
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

ENV = "FATE_REGISTRY_FAULTPOINT"
T = TypeVar("T")


def reached(point: str) -> None:
    """Stop this process here (SIGSTOP) when the environment names ``point``; else do nothing."""
    if os.environ.get(ENV) == point:
        # to this thread: it stops before its next instruction (a process-wide kill lets it run on a moment)
        signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)


def midway(items: Iterable[T], point: str) -> Iterator[T]:
    """``items``, passing ``point`` once the first item has been used and before the second is read."""
    for index, item in enumerate(items):
        if index == 1:
            reached(point)
        yield item
