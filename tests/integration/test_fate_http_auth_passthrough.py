"""The FATE-Flow HTTP API's authentication (FATE-Flow's HMAC-SHA1 signature) and its pass-through to an upstream
FATE-Flow, on real processes; the upstream is a stand-in that echoes what it receives
(:mod:`tests.support.fate_flow_upstream`)."""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import generate_model
from tests.fate_http import call, import_archive, send, signed_headers
from tests.support.fate_flow_upstream import Upstream, upstream_server
from tests.support.federation import LocalFederation

KEYS = ("app-key-1", "secret-key-1")
SECRET_IN_LOGS = KEYS[1]


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with upstream_server(echo=True) as echo:
        yield echo


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[LocalFederation]:
    http = {
        "address": "127.0.0.1:0",
        "upstream": upstream.url,
        "authentication": {"switch": True, "http_app_key": KEYS[0], "http_secret_key": KEYS[1]},
    }
    extra = {"coordinator": {"address": "127.0.0.1:0", "http": http}}
    with LocalFederation.start(tmp_path_factory.mktemp("fed"), extra_conf=extra) as federation:
        yield federation


def test_a_signed_request_is_served_and_an_unsigned_bad_or_stale_one_is_109(fed: LocalFederation) -> None:
    address = fed.http_address
    body = {"module": "FATEFlow"}
    assert call(address, "/v1/version/get", body, keys=KEYS).json()["retcode"] == 0
    unsigned = call(address, "/v1/version/get", body).json()
    assert unsigned == {
        "retcode": 109,
        "retmsg": "requirement headers parameters: ['TIMESTAMP', 'NONCE', 'APP_KEY', 'SIGNATURE']",
    }
    bad = call(address, "/v1/version/get", body, keys=(KEYS[0], "not-the-secret"))
    assert (bad.status, bad.json()) == (200, {"retcode": 109, "retmsg": "signature authentication failed"})
    unknown = call(address, "/v1/version/get", body, keys=("another-app", KEYS[1])).json()
    assert unknown == {"retcode": 109, "retmsg": "Unknown APP_KEY"}

    raw = b'{"module": "FATEFlow"}'
    stale = signed_headers(KEYS, "/v1/version/get", raw)
    stale["TIMESTAMP"] = str(int(time.time() * 1000) - 120_000)
    answer = send(address, "POST", "/v1/version/get", raw, stale).json()
    assert answer == {"retcode": 109, "retmsg": "TIMESTAMP is more than 60 seconds away from the server time"}
    hyphen = signed_headers(KEYS, "/v1/version/get", raw)
    hyphen["APP-KEY"] = hyphen.pop("APP_KEY")
    assert send(address, "POST", "/v1/version/get", raw, hyphen).json()["retcode"] == 0
    tampered = signed_headers(KEYS, "/v1/version/get", raw)
    assert send(address, "POST", "/v1/version/get", b'{"module": "FATE"}', tampered).json()["retcode"] == 109


def test_a_signed_import_checks_its_text_fields(fed: LocalFederation, tmp_path: Path) -> None:
    model = generate_model(tmp_path)
    archive = model.archives["guest", "9999"]
    fields = {
        "role": "guest",
        "party_id": "9999",
        "model_id": model.model_id,
        "model_version": model.version,
        "force_update": "0",
    }
    assert import_archive(fed.http_address, fields, archive, keys=(KEYS[0], "wrong")).json()["retcode"] == 109
    refused = call(fed.http_address, "/v1/model/export", fields, method="GET", keys=(KEYS[0], "wrong"))
    assert refused.status == 401 and refused.json()["retcode"] == 109  # never 200: FATE's CLI saves a 200
    answer = import_archive(fed.http_address, fields, archive, keys=KEYS)
    assert answer.status == 200 and answer.json()["retcode"] == 0, answer
    exported = call(fed.http_address, "/v1/model/export", fields, method="GET", keys=KEYS)
    assert exported.status == 200 and exported.body[:2] == b"PK"


def test_the_keys_are_never_logged(fed: LocalFederation) -> None:
    logs = [path.read_text(encoding="utf-8", errors="replace") for path in (fed.data_dir / "logs").glob("*.log")]
    assert logs and not any(SECRET_IN_LOGS in text for text in logs)


def test_what_the_registry_does_not_serve_goes_upstream_unchanged(fed: LocalFederation, upstream: Upstream) -> None:
    address = fed.http_address
    job = b'{"dsl": {"components": {}}, "runtime_conf": {"initiator": {"role": "guest", "party_id": 9999}}}'
    headers = {"Content-Type": "application/json", **signed_headers(KEYS, "/v1/job/submit?x=1", job)}
    answer = send(address, "POST", "/v1/job/submit?x=1", job, headers)
    assert answer.status == 201 and answer.headers["X-Upstream"] == "fate-flow"
    assert answer.json()["data"] == {
        "method": "POST",
        "path": "/v1/job/submit?x=1",
        "sha256": hashlib.sha256(job).hexdigest(),
    }
    received = upstream.received[-1]
    assert received.body == job
    for name, value in headers.items():
        assert (name, value) in received.headers

    upload = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="t.csv"\r\n\r\n'
        + bytes(range(256)) * 4096
        + b"\r\n--b--\r\n"
    )
    uploaded = send(address, "POST", "/v1/data/upload", upload, {"Content-Type": "multipart/form-data; boundary=b"})
    assert uploaded.status == 201 and uploaded.json()["data"]["sha256"] == hashlib.sha256(upload).hexdigest()
    assert upstream.received[-1].body == upload
    got = send(address, "GET", "/v1/table/table_info")
    assert got.status == 201 and got.json()["data"]["method"] == "GET"


def test_an_unreachable_upstream_is_answered_naming_it(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"  # nothing listens once it is closed
    extra = {"coordinator": {"address": "127.0.0.1:0", "http": {"address": "127.0.0.1:0", "upstream": url}}}
    with LocalFederation.start(tmp_path / "fed", parties={"9999": {}}, extra_conf=extra) as federation:
        answer = send(federation.http_address, "POST", "/v1/job/submit", b"{}")
    assert answer.status == 200 and answer.json()["retcode"] == 100, answer
    assert answer.json()["retmsg"].startswith(f"the upstream FATE-Flow {url} could not be reached")


def test_without_an_upstream_the_signature_is_checked_before_a_route_is_not_found(tmp_path: Path) -> None:
    """As FATE-Flow, whose authentication runs before its routing: an unsigned request to a route it lacks is 109."""
    http = {
        "address": "127.0.0.1:0",
        "authentication": {"switch": True, "http_app_key": KEYS[0], "http_secret_key": KEYS[1]},
    }
    extra = {"coordinator": {"address": "127.0.0.1:0", "http": http}}
    with LocalFederation.start(tmp_path / "fed", parties={"9999": {}}, extra_conf=extra) as federation:
        address = federation.http_address
        unsigned = call(address, "/v1/job/submit", {"dsl": {}}).json()
        signed = call(address, "/v1/job/submit", {"dsl": {}}, keys=KEYS).json()
        wrong_method_unsigned = call(address, "/v1/model/query", {"model_id": "m"}, method="PUT").json()
        wrong_method_signed = call(address, "/v1/model/query", {"model_id": "m"}, method="PUT", keys=KEYS).json()
    assert unsigned["retcode"] == 109 and wrong_method_unsigned["retcode"] == 109
    assert (signed["retcode"], signed["retmsg"]) == (100, "<NotFound '404: Not Found'>")
    assert wrong_method_signed["retcode"] == 100 and wrong_method_signed["retmsg"] != signed["retmsg"]
