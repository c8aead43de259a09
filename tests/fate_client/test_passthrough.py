"""Routes the registry does not serve go to the upstream FATE-Flow unchanged, both ways: the 1.11 CLI's job
submit and data upload through the registry reach the upstream stand-in byte for byte as they reach it
directly (the multipart boundary aside, which the client draws anew each run), signature headers included,
and its answers come back as it sent them."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.fate_client.conftest import HttpFederation, conf_file
from tests.support.fate_client import FateClient
from tests.support.fate_flow_upstream import JOB_ID, Received, Upstream

APP_KEY, SECRET_KEY = "upstream-app", "upstream-secret"
SIGNATURE_HEADERS = ("TIMESTAMP", "NONCE", "APP_KEY", "SIGNATURE")


def _signed_clients(
    upstream: Upstream, http_federation: HttpFederation, tmp_path: Path
) -> tuple[FateClient, FateClient]:
    """A 1.11 client of the registry and one of the upstream directly, both signing with the upstream's keys."""
    upstream.app_key, upstream.secret_key = APP_KEY, SECRET_KEY
    through = FateClient.create(tmp_path / "through")
    through.init(http_federation.http_address, APP_KEY, SECRET_KEY)
    direct = FateClient.create(tmp_path / "direct")
    direct.init(f"127.0.0.1:{upstream.port}", APP_KEY, SECRET_KEY)
    return through, direct


def _comparable(request: Received, boundary: str = "") -> tuple[str, str, list[tuple[str, str]], bytes]:
    """What must match between the forwarded and the direct request: all but the per-run values."""
    per_run = {"host", *(h.lower() for h in SIGNATURE_HEADERS)}
    headers = sorted((k.lower(), v.replace(boundary, "B") if boundary else v) for k, v in request.headers)
    body = request.body.replace(boundary.encode(), b"B") if boundary else request.body
    return request.method, request.path, [(k, v) for k, v in headers if k not in per_run], body


def _boundary(request: Received) -> str:
    return (request.header("Content-Type") or "").split("boundary=", 1)[1]


def test_job_submit_and_data_upload_pass_through(
    upstream: Upstream, http_federation: HttpFederation, tmp_path: Path
) -> None:
    through, direct = _signed_clients(upstream, http_federation, tmp_path)
    try:
        dsl = {"components": {"reader_0": {"module": "Reader", "output": {"data": ["data"]}}}}
        runtime = {"dsl_version": 2, "initiator": {"role": "guest", "party_id": 9999}, "role": {"guest": [9999]}}
        submit = [
            "job",
            "submit",
            "-c",
            conf_file(tmp_path, "conf.json", runtime),
            "-d",
            conf_file(tmp_path, "dsl.json", dsl),
        ]
        table = tmp_path / "breast_hetero_guest.csv"
        table.write_bytes(b"id,y,x0\n" + b"".join(b"%d,1,%f\n" % (i, i / 7) for i in range(120_000)))
        upload = {"file": str(table), "head": 1, "partition": 4, "table_name": "t", "namespace": "n"}
        upload_conf = conf_file(tmp_path, "upload.json", upload)

        answers = []
        for client in (through, direct):
            first = len(upstream.received)
            submit_code, submitted = client.flow(*submit)
            upload_code, uploaded = client.flow("data", "upload", "-c", upload_conf)
            assert submit_code == upload_code == 0
            answers.append((submitted, uploaded, upstream.received[first:]))
        (via_submit, via_upload, via), (direct_submit, direct_upload, straight) = answers

        assert via_submit == direct_submit and via_submit["jobId"] == JOB_ID, via_submit
        assert via_upload["retcode"] == 0, via_upload  # 109 if a signature broke
        assert via_upload["data"]["bytes"] == direct_upload["data"]["bytes"]  # the digests differ by the boundary
        assert len(via) == len(straight) == 2
        assert _comparable(via[0]) == _comparable(straight[0])
        assert _comparable(via[1], _boundary(via[1])) == _comparable(straight[1], _boundary(straight[1]))
        assert table.read_bytes() in via[1].body
        assert via_upload["data"]["sha256"] == hashlib.sha256(via[1].body).hexdigest()
        for request in via:
            assert all(request.header(h) for h in SIGNATURE_HEADERS) and upstream.signed_correctly(request)
    finally:
        upstream.app_key = upstream.secret_key = ""
