"""What the dashboard's pages share: their query, page sizes, times, the next-page link."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from registry_server.dashboard.html import link

PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
Query = Mapping[str, str]


def page_size(query: Query) -> int:
    """The query's ``page_size`` when a positive number (at most MAX_PAGE_SIZE), else PAGE_SIZE."""
    asked = query.get("page_size", "")
    return min(int(asked), MAX_PAGE_SIZE) if asked.isdigit() and int(asked) > 0 else PAGE_SIZE


def when(stamp: Timestamp) -> str:
    """A timestamp as shown on a page; empty when unset."""
    if not stamp.seconds:
        return ""
    return datetime.fromtimestamp(stamp.seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def next_link(path: str, token: str, query: Query) -> str:
    """A link to the next page (the same query from ``token``), or nothing on the last page."""
    return f"<p>{link(path, 'next page', **{**query, 'page_token': token})}</p>" if token else ""
