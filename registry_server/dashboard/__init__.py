"""The coordinator's read-only web dashboard (``/dashboard/`` on its HTTP address).

Pages in :mod:`.pages`, their HTML in :mod:`.html`, the stylesheet and script in ``assets/`` (shipped in
the package, no CDN).
"""

from __future__ import annotations

from fate_registry.errors import RegistryError
from registry_server.dashboard.html import ASSETS, asset, page, text
from registry_server.dashboard.pages import PAGES
from registry_server.dashboard.view import Query
from registry_server.fate_http.calls import Registry
from registry_server.fate_http.replies import Reply

HTML = "text/html; charset=utf-8"
# Pages are private to their caller and change with every operation: never cached, never framed.
HEADERS = (("Cache-Control", "no-store"), ("X-Frame-Options", "DENY"), ("X-Content-Type-Options", "nosniff"))


def serve(path: str, query: Query, registry: Registry, peer: str) -> Reply:
    """The page at ``path`` (below ``/dashboard``); an RPC's refusal is shown as the page, with its message."""
    if path.startswith("/assets/") and path.removeprefix("/assets/") in ASSETS:
        name = path.removeprefix("/assets/")
        return Reply(200, asset(name), ASSETS[name], HEADERS)
    render = PAGES.get(path or "/")
    if render is None:
        return Reply(404, page("Not found", "<p>no such page</p>"), HTML, HEADERS)
    try:
        return Reply(200, render(registry, peer, query), HTML, HEADERS)
    except RegistryError as exc:
        return Reply(200, page("Refused", f"<p class='failed'>{text(exc.message)}</p>"), HTML, HEADERS)
