"""The dashboard's pages fetched over HTTP and their tables read as text, for tests without a browser."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urlencode

from tests.fate_http import send


class _Tables(HTMLParser):
    """Every table with an id: its body's rows, each a list of its cells' text."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._in_body = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = dict(attrs).get("id") or None
            if self._table is not None:
                self.tables[self._table] = []
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body and self._table is not None:
            self.tables[self._table].append([])
        elif tag == "td" and self._in_body and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tbody":
            self._in_body = False
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def dashboard_page(address: str, path: str, **query: str) -> str:
    """The page at ``/dashboard<path>`` of the coordinator's HTTP ``address``, as HTML (it must answer 200)."""
    answer = send(address, "GET", f"/dashboard{path}" + (f"?{urlencode(query)}" if query else ""))
    assert answer.status == 200, answer.body[:500]
    return answer.body.decode()


def tables(html: str) -> dict[str, list[list[str]]]:
    """The page's tables by id: each its body's rows, each row its cells' text (whitespace collapsed)."""
    parser = _Tables()
    parser.feed(html)
    return parser.tables
