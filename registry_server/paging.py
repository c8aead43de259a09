"""Keyset paging for the catalog's lists: a page token is the sort key of the last row returned."""

from __future__ import annotations

import base64

from fate_registry.errors import Reason, RegistryError

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def page_size(requested: int) -> int:
    """The rows of one page: the registry's default for 0, else at least 1 and at most the maximum."""
    return min(max(requested or DEFAULT_PAGE_SIZE, 1), MAX_PAGE_SIZE)


def encode_token(position: int, key: str) -> str:
    """The page token after the row at ``position`` with sort key ``key``."""
    return base64.urlsafe_b64encode(f"{position}:{key}".encode()).decode()


def decode_token(token: str) -> tuple[int, str]:
    """(position, key) of a page token; INVALID_ARGUMENT for one this server did not issue."""
    try:
        position, _, key = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        return int(position), key
    except (ValueError, UnicodeDecodeError):
        raise RegistryError(Reason.INVALID_ARGUMENT, "the page token is not one this server issued") from None
