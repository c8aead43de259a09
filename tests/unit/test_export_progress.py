"""An export's progress bar: its total comes from the stream's header, so it shows a percentage and an ETA as
the import's does; it never passes 100 %, and it is drawn only on a terminal."""

from __future__ import annotations

import io
import re
import sys
import zlib
from pathlib import Path

import pytest

from client.handlers import progress_bar
from client.sdk import receive_archive
from fate_registry.chunks import encode_chunk
from fate_registry.v1 import common_pb2 as common
from fate_registry.v1 import registry_pb2 as pb

ARCHIVE_NAME = "guest#9999#arbiter-10000#guest-9999#host-10000#model_v1.zip"
MIB = 1024 * 1024
PAYLOAD = bytes(range(256)) * (3 * MIB // 256)


class _Terminal(io.StringIO):
    """stderr as a terminal: what ``flow`` draws its bars on."""

    def isatty(self) -> bool:
        return True


def _stream(payload: bytes, content_size: int, chunk: int = MIB // 4) -> list[bytes]:
    """An export stream as the registry sends it: header (with ``content_size``), chunks, trailer."""
    header = pb.ExportModelResponse(
        header=common.ExportModelHeader(file_name=ARCHIVE_NAME, party_model_id="p", content_size=content_size)
    )
    trailer = pb.ExportModelResponse(trailer=common.ExportModelTrailer(crc32=zlib.crc32(payload), size=len(payload)))
    chunks = [encode_chunk(payload[i : i + chunk]) for i in range(0, len(payload), chunk)]
    return [header.SerializeToString(), *chunks, trailer.SerializeToString()]


def _frames(drawn: str) -> list[str]:
    """The bar's successive renderings (tqdm redraws the line after a carriage return)."""
    return [frame.strip() for frame in re.split(r"[\r\n]", drawn) if frame.strip()]


def _export_with_bar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content_size: int) -> list[str]:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with progress_bar(None, "export") as bar:
        assert bar is not None
        result = receive_archive(iter(_stream(PAYLOAD, content_size)), tmp_path, "the model", bar.advance, bar.expect)
        bar.finish()
    assert result.size == len(PAYLOAD) and (tmp_path / ARCHIVE_NAME).read_bytes() == PAYLOAD
    return _frames(terminal.getvalue())


def test_the_export_bar_has_a_total_percentage_and_eta_from_the_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames = _export_with_bar(tmp_path, monkeypatch, content_size=len(PAYLOAD))
    # drawn as a byte counter while the call starts; the total is known before the first byte: 0 of 3 MiB, 0 %
    sized = [frame for frame in frames if "%" in frame]
    assert re.fullmatch(r"export:\s+0%\|\s*\| 0\.00/3\.00M \[00:00<\?, \?B/s\]", sized[0]), frames
    assert all(frame.startswith("export: 0.00B") for frame in frames[: frames.index(sized[0])]), frames
    # at the end: 3 MiB of 3 MiB, 100 %, elapsed<remaining and the rate, as the import's bar shows them
    assert re.fullmatch(r"export: 100%\|[█#]+\| 3\.00M/3\.00M \[\d\d:\d\d<00:00, [\d.]+[kMG]?B/s\]", frames[-1]), frames


def test_an_archive_larger_than_its_files_ends_at_100_percent_never_beyond(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # content_size counts the model files; the archive adds its zip headers and manifest
    frames = _export_with_bar(tmp_path, monkeypatch, content_size=len(PAYLOAD) - 300 * 1024)
    percentages = [int(m.group(1)) for frame in frames if (m := re.match(r"export:\s+(\d+)%", frame))]
    assert percentages and max(percentages) == 100 and percentages[-1] == 100
    assert re.search(r"\| 3\.00M/3\.00M \[", frames[-1]), frames[-1]


def test_a_deflated_archive_smaller_than_its_files_ends_at_100_percent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames = _export_with_bar(tmp_path, monkeypatch, content_size=3 * len(PAYLOAD))  # the files deflate to a third
    assert re.fullmatch(r"export: 100%\|[█#]+\| 3\.00M/3\.00M \[\d\d:\d\d<00:00, [\d.]+[kMG]?B/s\]", frames[-1]), frames


def test_a_stream_without_a_size_still_counts_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frames = _export_with_bar(tmp_path, monkeypatch, content_size=0)  # an older registry's header
    assert re.fullmatch(r"export: 3\.00MB? \[\d\d:\d\d, [\d.]+[kMG]?B/s\]", frames[-1]), frames[-1]


def test_no_bar_when_stderr_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    piped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", piped)
    with progress_bar(None, "export") as bar:
        assert bar is None
    assert piped.getvalue() == ""
