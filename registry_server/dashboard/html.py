"""The dashboard's HTML: a page around its content, tables, links; every value escaped (:func:`html.escape`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape
from importlib import resources
from urllib.parse import urlencode

PREFIX = "/dashboard"
NAV = (("models", "/"), ("operations", "/operations"), ("federation", "/health"))
ASSETS = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}


def asset(name: str) -> bytes:
    """A file shipped in the package (no CDN: the users' machines are often offline)."""
    return resources.files(__package__).joinpath("assets", name).read_bytes()


def link(path: str, text: str, **query: str) -> str:
    """A link to a dashboard page; empty query values are left out."""
    kept = {k: v for k, v in query.items() if v}
    target = f"{PREFIX}{path}" + (f"?{urlencode(kept)}" if kept else "")
    return f'<a href="{escape(target)}">{escape(text)}</a>'


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], css_id: str = "") -> str:
    """A table; ``rows`` hold HTML already escaped (use :func:`text` for plain values)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    ident = f' id="{escape(css_id)}"' if css_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def text(value: object) -> str:
    """``value`` as HTML-escaped text."""
    return escape(str(value))


def marked(value: str) -> str:
    """A state word with its class (failed, in_doubt, down... stand out)."""
    return f'<span class="{escape(value)}">{escape(value)}</span>'


def search_form(path: str, fields: Mapping[str, str], choices: Mapping[str, Sequence[str]] | None = None) -> str:
    """A GET form of text boxes (and selects for ``choices``) keeping the current values."""
    inputs = []
    for name, current in fields.items():
        options = (choices or {}).get(name)
        if options is None:
            inputs.append(f'<label>{escape(name)} <input name="{escape(name)}" value="{escape(current)}"></label>')
            continue
        items = "".join(
            f'<option value="{escape(o)}"{" selected" if o == current else ""}>{escape(o or "any")}</option>'
            for o in options
        )
        inputs.append(f'<label>{escape(name)} <select name="{escape(name)}">{items}</select></label>')
    return f'<form method="get" action="{escape(PREFIX + path)}">{"".join(inputs)}<button>search</button></form>'


def page(title: str, content: str) -> bytes:
    """A whole HTML page (UTF-8): the navigation, ``title`` and ``content`` (already HTML)."""
    nav = "".join(link(path, name) for name, path in NAV)
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{escape(title)} · FATE model registry</title>"
        f'<link rel="stylesheet" href="{PREFIX}/assets/dashboard.css">'
        f'<script src="{PREFIX}/assets/dashboard.js" defer></script></head>'
        f"<body><nav>{nav}</nav><main><h1>{escape(title)}</h1>{content}</main></body></html>"
    ).encode()
