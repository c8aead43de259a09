"""The states of an operation in the operation log, as the catalog stores them (their values are on disk)."""

from __future__ import annotations

from enum import StrEnum


class OpState(StrEnum):
    """The state of an operation in the log."""

    RUNNING = "running"
    """A single-phase operation under way (a one-hop transfer too, while its ticket is open)."""
    PREPARING = "preparing"
    """A two-phase operation's plan is logged; its parties are preparing."""
    COMMITTING = "committing"
    """Every party prepared: the commit is decided and is sent until every party confirms it."""
    ABORTING = "aborting"
    """A party did not prepare (or the coordinator stopped first): the abort is sent until every party confirms it."""
    IN_DOUBT = "in_doubt"
    """A party's answer was lost: it may have done the work; it is asked later."""
    SUCCESS = "success"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    """A two-phase operation undone everywhere because its coordinator stopped before every party prepared."""
    INTERRUPTED = "interrupted"
    """A single-phase operation whose coordinator stopped before it finished."""
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        """Whether the operation has its outcome: nothing more is done for it."""
        return self in (OpState.SUCCESS, OpState.FAILED, OpState.ROLLED_BACK, OpState.INTERRUPTED, OpState.CANCELLED)


UNFINISHED = (OpState.RUNNING, OpState.PREPARING, OpState.COMMITTING, OpState.ABORTING)
"""The states a replica finishes or undoes for an operation whose owner is gone (:meth:`TwoPhase.recover`)."""
