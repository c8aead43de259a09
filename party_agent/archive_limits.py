"""What an archive may expand to on this disk, and how its sizes read in a message."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from fate_registry.errors import Reason, RegistryError

# An entry, and the deflated entries of an archive together, may always inflate to this many bytes:
# below it a ratio means little (a few KiB of JSON may deflate 100-fold), and checking only past it
# bounds what a bomb writes. FATE's buffers past 256 KiB deflate at most 3-fold (see LimitsConf).
EXPANSION_FLOOR = 1024 * 1024
# What an import leaves free on the disk it writes to, for the database, the logs and other writers:
# 1 GiB, or a twentieth of a disk smaller than 20 GiB.
DISK_MARGIN_BYTES = 1024**3
DISK_MARGIN_SHARE = 20


def quoted(name: str) -> str:
    """An entry's name for a message: quoted, escaped, cut after 100 characters."""
    return repr(name) if len(name) <= 100 else f"{name[:100]!r}…"


def amount(size: int) -> str:
    """``size`` bytes as a person reads them: 512 B, 3.2 GiB."""
    if size < 1024:
        return f"{size} B"
    scaled, unit = size / 1024, "KiB"
    for larger in ("MiB", "GiB", "TiB", "PiB"):
        if scaled < 1024:
            break
        scaled, unit = scaled / 1024, larger
    return f"{scaled:.1f} {unit}"


@dataclass(frozen=True)
class DiskRoom:
    """What an extraction may write: the disk's free space when it starts, less a margin."""

    free: int
    margin: int
    disk: str  # whose disk, for messages: "party 9999's disk"

    @classmethod
    def of(cls, directory: Path, disk: str) -> DiskRoom:
        usage = shutil.disk_usage(directory)
        return cls(usage.free, min(DISK_MARGIN_BYTES, usage.total // DISK_MARGIN_SHARE), disk)

    @property
    def bytes(self) -> int:
        return max(0, self.free - self.margin)

    def refusal(self, what: str) -> RegistryError:
        """The error for ``what`` ("the archive is 3.0 GiB"), which does not fit."""
        return RegistryError(
            Reason.ARCHIVE_TOO_LARGE,
            f"{what}, but {self.disk} has {amount(self.free)} free (keeping a {amount(self.margin)} margin): "
            "no space left for it, nothing was imported",
        )


@dataclass(frozen=True)
class ArchiveLimits:
    """What an archive may expand to.

    Bytes in all, entries, bytes inflated per compressed byte (past :data:`EXPANSION_FLOOR`), and, when given, the room
    on the disk.
    """

    max_bytes: int
    max_entries: int
    max_ratio: int
    room: DiskRoom | None = None

    def check_expansion(self, given: int, taken: int, what: str, whose: str = "its") -> None:
        """Refuse ``taken`` compressed bytes that inflate to ``given`` past the ratio.

        ``what`` expands, ``whose`` compressed size it is ("archive entry 'x' expands", "its").
        """
        if given > max(EXPANSION_FLOOR, self.max_ratio * taken):
            raise RegistryError(
                Reason.ARCHIVE_TOO_LARGE,
                f"{what} {given // max(taken, 1)}x {whose} compressed size (limit {self.max_ratio}x): "
                "a zip bomb? nothing was imported",
            )
