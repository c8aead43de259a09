"""The records of a zip archive that its writer and its reader share, and the MS-DOS dates they carry.

APPNOTE 6.3: local header, data descriptor, central directory, zip64 end records.
"""

from __future__ import annotations

import struct
import time

from fate_registry.errors import Reason, RegistryError

LOCAL_SIG = 0x04034B50
CENTRAL_SIG = 0x02014B50
DESCRIPTOR_SIG = b"PK\x07\x08"
ZIP64_END_SIG = 0x06064B50
ZIP64_LOCATOR_SIG = 0x07064B50
END_SIG = 0x06054B50
ZIP64_EXTRA = 0x0001
STORED, DEFLATED = 0, 8
FLAG_ENCRYPTED, FLAG_DESCRIPTOR, FLAG_UTF8 = 0x1, 0x8, 0x800
MAX_32 = 0xFFFFFFFF
LOCAL = struct.Struct("<IHHHHHIIIHH")
CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
END = struct.Struct("<IHHHHIIH")
ZIP64_END = struct.Struct("<IQHHIIQQQQ")
ZIP64_LOCATOR = struct.Struct("<IIQI")
SIG_BYTES = {sig: struct.pack("<I", sig) for sig in (CENTRAL_SIG, END_SIG, ZIP64_END_SIG, ZIP64_LOCATOR_SIG)}


def bad(message: str) -> RegistryError:
    """BAD_ARCHIVE with ``message``."""
    return RegistryError(Reason.BAD_ARCHIVE, message)


def dos_time(mtime: float) -> tuple[int, int]:
    """(time, date) in MS-DOS format; zip cannot say anything before 1980."""
    t = time.localtime(max(mtime, 315532800))
    return (t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2), ((t.tm_year - 1980) << 9) | (
        t.tm_mon << 5
    ) | t.tm_mday


def dos_mtime(dos_t: int, dos_d: int) -> float:
    """The POSIX time of an MS-DOS (time, date) pair read as local time; 1980 when it cannot be one."""
    fields = (
        (dos_d >> 9) + 1980,
        (dos_d >> 5) & 0xF,
        dos_d & 0x1F,
        dos_t >> 11,
        (dos_t >> 5) & 0x3F,
        (dos_t & 0x1F) * 2,
    )
    try:
        return time.mktime((*fields, 0, 0, -1))
    except (OverflowError, ValueError):
        return 315532800.0


def decoded_name(raw: bytes, flags: int) -> str:
    """An entry's name: UTF-8 when its flags say so, else the code page 437 of MS-DOS."""
    try:
        return raw.decode("utf-8" if flags & FLAG_UTF8 else "cp437")
    except UnicodeDecodeError:
        raise bad("an archive entry's name is marked UTF-8 but is not") from None


def zip64_values(extra: bytes) -> list[int] | None:
    """The 8-byte values of the zip64 extra field, or None when there is none."""
    pos = 0
    while pos + 4 <= len(extra):
        kind, length = struct.unpack_from("<HH", extra, pos)
        if kind == ZIP64_EXTRA:
            count = min(length, len(extra) - pos - 4) // 8
            return list(struct.unpack_from(f"<{count}Q", extra, pos + 4))
        pos += 4 + length
    return None
