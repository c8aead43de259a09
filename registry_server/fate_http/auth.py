r"""FATE-Flow's client authentication (its ``authentication.client``): an HMAC-SHA1 signature in the headers.

``SIGNATURE = base64(HMAC-SHA1(secret, TIMESTAMP \n NONCE \n APP_KEY \n path[?query] \n body \n form))``:
a JSON request signs its raw body (the form part empty), a multipart one (an import) its text fields
URL-encoded in key order (the body part empty). TIMESTAMP is in milliseconds and within 60 s of the server's
clock. Every refusal is HTTP 200, retcode 109, with FATE-Flow's words; no key is ever logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from email.message import Message
from urllib.parse import quote, urlencode

from fate_registry.config import HttpAuthConf
from fate_registry.errors import Reason, RegistryError, Retcode

HEADERS = ("TIMESTAMP", "NONCE", "APP_KEY", "SIGNATURE")
MAX_CLOCK_SKEW_MS = 60_000


def _refuse(message: str) -> RegistryError:
    return RegistryError(Reason.UNAUTHENTICATED, message, retcode=Retcode.AUTHENTICATION_ERROR)


def _header(headers: Message, name: str) -> str | None:
    """A header as Werkzeug finds it: ``APP_KEY`` and ``APP-KEY`` alike."""
    value = headers.get(name)
    return value if value is not None else headers.get(name.replace("_", "-"))


def form_text(fields: Mapping[str, str]) -> bytes:
    """How FATE signs a multipart request's text fields (the first value of each name)."""
    return urlencode(sorted(fields.items()), quote_via=quote, safe="-._~").encode()


def _signature(secret: str, timestamp: str, nonce: str, app_key: str, path: str, body: bytes, form: bytes) -> str:
    message = b"\n".join([timestamp.encode(), nonce.encode(), app_key.encode(), path.encode(), body, form])
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha1).digest()).decode("ascii")


def check(conf: HttpAuthConf, headers: Message, path: str, body: bytes = b"", form: bytes = b"") -> None:
    """Refuse (:class:`RegistryError`, retcode 109) a request not signed with ``conf``'s key pair.

    ``path`` is the request's path with its query, if any.
    """
    values = {name: _header(headers, name) for name in HEADERS}
    if any(value is None for value in values.values()):
        raise _refuse(f"requirement headers parameters: {list(HEADERS)}")
    timestamp, nonce, app_key, signed = (str(values[name]) for name in HEADERS)
    if not timestamp.isdigit():
        raise _refuse("Invalid TIMESTAMP")
    if abs(int(time.time() * 1000) - int(timestamp)) > MAX_CLOCK_SKEW_MS:
        raise _refuse("TIMESTAMP is more than 60 seconds away from the server time")
    if not hmac.compare_digest(app_key.encode(), conf.http_app_key.encode()):
        raise _refuse("Unknown APP_KEY")
    expected = _signature(conf.http_secret_key.get_secret_value(), timestamp, nonce, app_key, path, body, form)
    if not hmac.compare_digest(signed.encode(), expected.encode()):
        raise _refuse("signature authentication failed")
