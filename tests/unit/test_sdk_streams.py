"""The SDK's archive streams and error conversion, over a real channel to a throwaway in-process server."""

from __future__ import annotations

import hashlib
import json
import socket
import sys
import zlib
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from client.cli import main
from client.sdk import RegistryClient
from fate_registry.config import LimitsConf
from fate_registry.errors import Reason, RegistryError
from fate_registry.v1 import common_pb2 as common
from fate_registry.v1 import registry_pb2 as pb
from fate_registry.v1 import registry_pb2_grpc

CHUNK = LimitsConf.upload_chunk_bytes
TARGET = common.PartyModelRef(
    role="guest", party_id="9999", model_id="arbiter-10000#guest-9999#host-10000#model", model_version="v1"
)
ARCHIVE_NAME = f"guest#9999#{TARGET.model_id}_v1.zip"


class FakeRegistry(registry_pb2_grpc.RegistryServiceServicer):
    """Records what the client sent and answers what the test set up; everything else is UNIMPLEMENTED."""

    def __init__(self) -> None:
        self.imported: list[pb.ImportModelRequest] = []
        self.export_stream: list[pb.ExportModelResponse] = []
        self.export_failure: RegistryError | None = None

    def ImportModel(
        self, request_iterator: Iterator[pb.ImportModelRequest], context: grpc.ServicerContext
    ) -> pb.ImportModelResponse:
        self.imported = list(request_iterator)
        data = b"".join(message.chunk for message in self.imported[1:])
        result = common.ImportModelResult(
            model=self.imported[0].header.target,
            job_id="202401010000000000000",
            manifest_digest="d" * 64,
            archive_sha256=hashlib.sha256(data).hexdigest(),
        )
        return pb.ImportModelResponse(result=result)

    def ExportModel(
        self, request: pb.ExportModelRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ExportModelResponse]:
        yield from self.export_stream
        if self.export_failure:
            context.abort_with_status(self.export_failure.to_status())

    def GetModelInfo(self, request: pb.GetModelInfoRequest, context: grpc.ServicerContext) -> pb.GetModelInfoResponse:
        context.abort_with_status(RegistryError(Reason.MODEL_NOT_FOUND, "Model v9 not found.").to_status())


@pytest.fixture
def registry() -> Iterator[tuple[FakeRegistry, str]]:
    fake = FakeRegistry()  # type: ignore[abstract]  # the stubs mark every RPC abstract; the servicer base is not
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    registry_pb2_grpc.add_RegistryServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield fake, f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


def export_stream(payload: bytes, crc32: int | None = None, size: int | None = None) -> list[pb.ExportModelResponse]:
    header = common.ExportModelHeader(file_name=ARCHIVE_NAME, party_model_id="p", content_size=len(payload))
    chunks = [pb.ExportModelResponse(chunk=payload[i : i + CHUNK]) for i in range(0, len(payload), CHUNK)]
    trailer = common.ExportModelTrailer(
        crc32=zlib.crc32(payload) if crc32 is None else crc32,
        size=len(payload) if size is None else size,
    )
    return [pb.ExportModelResponse(header=header), *chunks, pb.ExportModelResponse(trailer=trailer)]


PAYLOAD = bytes(range(256)) * (4 * CHUNK // 256) + b"tail"  # four whole chunks, then a short one


# Import -------------------------------------------------------------------------------------------


def test_import_sends_the_header_then_upload_sized_chunks(registry: tuple[FakeRegistry, str], tmp_path: Path) -> None:
    fake, address = registry
    archive = tmp_path / "model.zip"
    archive.write_bytes(PAYLOAD)
    progress: list[int] = []
    with RegistryClient(address) as client:
        response = client.import_model(archive, TARGET, force_update=True, sha256="ab" * 32, progress=progress.append)
    header = fake.imported[0].header
    assert fake.imported[0].WhichOneof("payload") == "header"
    assert (header.size, header.file_name, header.force_update, header.sha256) == (
        len(PAYLOAD),
        "model.zip",
        True,
        "ab" * 32,
    )
    assert header.target == TARGET
    chunks = [message.chunk for message in fake.imported[1:]]
    assert [len(chunk) for chunk in chunks] == [CHUNK, CHUNK, CHUNK, CHUNK, 4]
    assert b"".join(chunks) == PAYLOAD
    assert progress == [len(chunk) for chunk in chunks]
    assert response.result.job_id == "202401010000000000000"


def test_import_of_a_missing_file_fails_before_any_call(registry: tuple[FakeRegistry, str], tmp_path: Path) -> None:
    fake, address = registry
    with RegistryClient(address) as client, pytest.raises(RegistryError) as caught:
        client.import_model(tmp_path / "absent.zip", TARGET)
    assert caught.value.reason is Reason.INVALID_ARGUMENT
    assert str(tmp_path / "absent.zip") in caught.value.message
    assert fake.imported == []


def _import_changing(address: str, archive: Path, change: Callable[[], None]) -> RegistryError:
    """Import ``archive``, running ``change`` once its first chunk is sent; the error the SDK raised."""
    changed: list[int] = []

    def progress(sent: int) -> None:
        if not changed:
            changed.append(sent)
            change()

    with RegistryClient(address) as client, pytest.raises(RegistryError) as caught:
        client.import_model(archive, TARGET, progress=progress)
    return caught.value


@pytest.mark.parametrize("how", ["shrinks", "grows"])
def test_import_of_a_file_that_changes_while_sent_ends_short(
    registry: tuple[FakeRegistry, str], tmp_path: Path, how: str
) -> None:
    """The stream ends without the chunk that would have completed the announced size (a party refuses
    an archive that arrives short), and the SDK raises even though this fake server answered."""
    fake, address = registry
    archive = tmp_path / "model.zip"
    archive.write_bytes(PAYLOAD)

    def change() -> None:
        with archive.open("r+b") as file:
            if how == "shrinks":
                file.truncate(CHUNK + 1)
            else:
                file.seek(0, 2)
                file.write(b"more")

    error = _import_changing(address, archive, change)
    assert error.reason is Reason.INVALID_ARGUMENT
    assert "the file changed while it was sent" in error.message
    assert fake.imported[0].header.size == len(PAYLOAD)
    sent = b"".join(message.chunk for message in fake.imported[1:])
    assert len(sent) < len(PAYLOAD) and PAYLOAD.startswith(sent)


# Export -------------------------------------------------------------------------------------------


def test_export_writes_the_verified_archive(registry: tuple[FakeRegistry, str], tmp_path: Path) -> None:
    fake, address = registry
    fake.export_stream = export_stream(PAYLOAD)
    received: list[int] = []
    with RegistryClient(address) as client:
        result = client.export_model(TARGET, tmp_path / "out", progress=received.append)
    assert result.path == tmp_path / "out" / ARCHIVE_NAME
    assert result.path.read_bytes() == PAYLOAD
    assert (result.crc32, result.size) == (zlib.crc32(PAYLOAD), len(PAYLOAD))
    assert sum(received) == len(PAYLOAD)
    assert [p.name for p in (tmp_path / "out").iterdir()] == [ARCHIVE_NAME]


@pytest.mark.parametrize("output", ["/proc/self", "/sys/kernel"])
def test_an_export_into_a_directory_that_takes_no_file_fails_before_any_call(
    registry: tuple[FakeRegistry, str], output: str
) -> None:
    """Directories that exist and refuse new files (as root too): the user hears which and why, nothing is sent."""
    fake, address = registry
    fake.export_stream = []  # a call would end without a header: DATA_LOSS, not the error expected
    with RegistryClient(address) as client, pytest.raises(RegistryError) as caught:
        client.export_model(TARGET, Path(output))
    assert caught.value.reason is Reason.INVALID_ARGUMENT
    assert caught.value.message.startswith(f"cannot write the archive into {output}: ")


@pytest.mark.parametrize(
    "stream",
    [
        pytest.param(export_stream(PAYLOAD, crc32=zlib.crc32(PAYLOAD) ^ 1), id="bad-crc32"),
        pytest.param(export_stream(PAYLOAD, size=len(PAYLOAD) + 1), id="bad-size"),
        pytest.param(export_stream(PAYLOAD)[:-1], id="no-trailer"),
        pytest.param([*export_stream(b"")[:2], pb.ExportModelResponse(chunk=b"x")], id="chunk-after-trailer"),
        pytest.param(export_stream(PAYLOAD)[1:], id="no-header"),
    ],
)
def test_a_bad_export_stream_is_data_loss_and_leaves_nothing(
    registry: tuple[FakeRegistry, str], tmp_path: Path, stream: list[pb.ExportModelResponse]
) -> None:
    fake, address = registry
    fake.export_stream = stream
    with RegistryClient(address) as client, pytest.raises(RegistryError) as caught:
        client.export_model(TARGET, tmp_path)
    assert caught.value.reason is Reason.DATA_LOSS
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["../escape.zip", "a/b.zip", ""])
def test_an_unsafe_archive_name_is_refused(registry: tuple[FakeRegistry, str], tmp_path: Path, name: str) -> None:
    fake, address = registry
    fake.export_stream = export_stream(b"abc")
    fake.export_stream[0].header.file_name = name
    with RegistryClient(address) as client, pytest.raises(RegistryError, match="unsafe archive name"):
        client.export_model(TARGET, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
    assert not (tmp_path / "escape.zip").exists()


def test_a_server_error_mid_export_keeps_its_reason_and_leaves_nothing(
    registry: tuple[FakeRegistry, str], tmp_path: Path
) -> None:
    fake, address = registry
    fake.export_stream = export_stream(PAYLOAD)[:3]
    fake.export_failure = RegistryError(Reason.NO_SPACE, "party 9999 ran out of disk")
    with RegistryClient(address) as client, pytest.raises(RegistryError) as caught:
        client.export_model(TARGET, tmp_path)
    assert (caught.value.reason, caught.value.message) == (Reason.NO_SPACE, "party 9999 ran out of disk")
    assert list(tmp_path.iterdir()) == []


# Errors -------------------------------------------------------------------------------------------


def test_server_errors_keep_reason_and_retcode(registry: tuple[FakeRegistry, str]) -> None:
    _, address = registry
    with RegistryClient(address) as client, pytest.raises(RegistryError) as caught:
        client.get_model_info(pb.GetModelInfoRequest(model_version="v9"))
    assert caught.value.reason is Reason.MODEL_NOT_FOUND
    assert caught.value.fate_retcode == 404
    assert caught.value.message == "Model v9 not found."


def test_an_unreachable_registry_is_named() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    with RegistryClient(address, timeout=5) as client, pytest.raises(RegistryError) as caught:
        client.list_model_tags(pb.ListModelTagsRequest(job_id="1"))
    assert caught.value.reason is Reason.PARTY_UNAVAILABLE
    assert caught.value.message.startswith(f"cannot reach the registry at {address}")


# The CLI over the same server ---------------------------------------------------------------------


def flow(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    status = main(argv)
    return status, json.loads(capsys.readouterr().out)


def test_cli_import_and_export(
    registry: tuple[FakeRegistry, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake, address = registry
    (tmp_path / "model.zip").write_bytes(PAYLOAD)
    conf = {"role": "guest", "party_id": 9999, "model_id": TARGET.model_id, "model_version": "v1"}
    (tmp_path / "import.json").write_text(json.dumps({**conf, "file": "model.zip"}), encoding="utf-8")
    status, answer = flow(["model", "import", "-c", str(tmp_path / "import.json"), "--address", address], capsys)
    assert status == 0
    assert answer["data"]["sha256"] == hashlib.sha256(PAYLOAD).hexdigest()
    assert answer["data"]["party_id"] == "9999"

    fake.export_stream = export_stream(PAYLOAD)
    (tmp_path / "export.json").write_text(json.dumps({**conf, "output_path": str(tmp_path / "out")}), encoding="utf-8")
    status, answer = flow(["--address", address, "model", "export", "-c", str(tmp_path / "export.json")], capsys)
    path = str(tmp_path / "out" / ARCHIVE_NAME)
    assert status == 0
    assert (answer["file"], answer["retmsg"]) == (path, f"download successfully, please check {path}")
    assert answer["data"]["crc32"] == f"{zlib.crc32(PAYLOAD):08x}"


def test_cli_prints_server_errors_as_fate_json(
    registry: tuple[FakeRegistry, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, address = registry
    status, answer = flow(["--address", address, "model", "get-model-info", "--model-version", "v9"], capsys)
    assert status == 1
    assert answer == {"retcode": 404, "retmsg": "Model v9 not found."}


def test_cli_shows_progress_on_a_terminal_only(
    registry: tuple[FakeRegistry, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, address = registry
    (tmp_path / "model.zip").write_bytes(PAYLOAD)
    conf = {"role": "guest", "party_id": 9999, "model_id": TARGET.model_id, "model_version": "v1", "file": "model.zip"}
    (tmp_path / "import.json").write_text(json.dumps(conf), encoding="utf-8")
    argv = ["--address", address, "model", "import", "-c", str(tmp_path / "import.json")]
    assert main(argv) == 0
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "import" in captured.err
    assert json.loads(captured.out)["retcode"] == 0
