"""Store and restore of a large model per engine, beside the engine's raw client on the same bytes in the same run.

Run from the repository root::

    .venv/bin/python -m bench.store_restore [--size-mib 1024] [--runs 3] [--engines mysql,redis,tencent_cos]
                                           [--workdir DIR] [--keep]

One run prepares a generated HeteroLR guest model (party 9999) of about ``--size-mib`` MiB and its stored
zip. Then, per engine, it starts the real server on loopback (MariaDB, redis-server or the COS emulator),
a federation whose ``model_store_address`` points at it, imports the model, and times, ``--runs`` times,
the CLI as a user types it: ``flow model export -c … --to-database`` (``force_update`` true, so each
run replaces the stored copy) and ``flow model import -c … --from-database`` (after an untimed
``flow model delete`` of the local copy). The baseline, on the very bytes the registry stored, is the
engine's raw client: pymysql inserting the same slices in one transaction and selecting them back,
redis-py pipelining SETs of 1 MiB chunks and GETting them back, the COS SDK's ``put_object`` (one
streamed PUT) and ``upload_file`` (its multipart uploader) and a streamed ``get_object``. Beside them,
the floor (:class:`FloorClient`): the first raw client plus only what a verified store or restore cannot
skip (the model read from the disk and hashed; every byte restored hashed and written durably). Every timed
operation, ours and the raw client's, starts once the server has finished what the one before left it
(InnoDB's purge, Redis's lazy free: :class:`Settler`). It prints a
table per engine (medians, min/max, throughput, ratio to the raw client, peak memory of ``flow``, the
agent, the coordinator and the engine's server) and, last, one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pymysql
import pymysql.cursors
import redis

from bench.bare_stream import write_verified
from bench.import_export import Flow, Measured, Prepared, prepare
from bench.memory import KIB, MIB, PeakWatch, cpu_seconds
from bench.scratch import log, scratch_dir
from fate_registry.checksums import BackgroundSha256
from fate_registry.direct_io import read_pieces
from fate_registry.identity import party_model_id
from party_agent.storage import StoreKey, open_store
from party_agent.storage.mysql import MySQLModelStore
from tests.support import services
from tests.support.federation import LocalFederation

ROLE: Final = "guest"
PARTY_ID: Final = 9999
ENGINES: Final = ("mysql", "redis", "tencent_cos")
MIN_BASELINE_RUNS: Final = 3
RATIO_TARGET: Final = 0.7
MEMORY_TARGET_MIB: Final = 200.0
AGENT: Final = f"agent-{PARTY_ID}"
SERVER_NAMES: Final = {"mysql": "mariadbd", "redis": "redis-server", "tencent_cos": "cos-emulator"}
REDIS_CHUNK: Final = 1 * MIB
REDIS_PIPELINE_BYTES: Final = 16 * MIB  # what the engine queues before it sends, too
READ_BLOCK: Final = 1 * MIB
COS_PART_MB: Final = 8  # upload_file's PartSize is in MB
COS_THREADS: Final = 5  # upload_file's default MAXThread
MYSQL_RAW_TABLE: Final = "bench_raw_slices"
PASSWORD: Final = "bench-store-restore-pw"
SETTLE_DEADLINE_S: Final = 120.0
SETTLE_POLL_S: Final = 0.05


# Figures -----------------------------------------------------------------------------------------


@dataclass
class Op:
    """One operation's wall times, and the peak RSS (KiB, max across runs) and CPU s of the watched processes."""

    name: str
    nbytes: int
    seconds: list[float] = field(default_factory=list)
    peaks_kib: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)

    def add(self, seconds: float, peaks_kib: dict[str, int], cpu: dict[str, float]) -> None:
        self.seconds.append(seconds)
        for name, kib in peaks_kib.items():
            self.peaks_kib[name] = max(self.peaks_kib.get(name, 0), kib)
        for name, used in cpu.items():
            self.cpu.setdefault(name, []).append(used)

    def add_measured(self, measured: Measured) -> None:
        self.add(measured.reaped.seconds, measured.peaks_kib, measured.cpu)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def rate(self, seconds: float | None = None) -> float:
        return self.nbytes / (self.median if seconds is None else seconds)

    def summary(self) -> dict[str, Any]:
        return {
            "bytes": self.nbytes,
            "runs": len(self.seconds),
            "seconds": [round(s, 4) for s in self.seconds],
            "median_s": round(self.median, 4),
            "min_s": round(min(self.seconds), 4),
            "max_s": round(max(self.seconds), 4),
            "median_mib_per_s": round(self.rate() / MIB, 1),
            "peak_mib": {name: round(kib / KIB, 1) for name, kib in self.peaks_kib.items()},
            "median_cpu_s": {name: round(statistics.median(used), 3) for name, used in self.cpu.items()},
        }


@dataclass
class EngineResult:
    engine: str
    stored_bytes: int
    ops: list[Op]
    ratios: dict[str, float]
    floors: dict[str, float]
    notes: list[str]
    setup_seconds: float
    total_seconds: float
    flow_startup_s: float

    def summary(self) -> dict[str, Any]:
        return {
            "stored_bytes": self.stored_bytes,
            "operations": {op.name: op.summary() for op in self.ops},
            "ratios": {name: round(value, 4) for name, value in self.ratios.items()},
            "floors": {name: round(value, 4) for name, value in self.floors.items()},
            "flow_startup_median_s": round(self.flow_startup_s, 4),
            "setup_s": round(self.setup_seconds, 1),
            "total_s": round(self.total_seconds, 1),
            "notes": self.notes,
        }


# Raw clients: the baseline -----------------------------------------------------------------------


class RawClient:
    """The engine's own client writing and reading one object of bytes (a file) and removing it, untimed."""

    piece_bytes = READ_BLOCK

    def write_pieces(self, pieces: Iterable[bytes], size: int) -> None:
        """Write ``size`` bytes given as ``pieces``."""
        raise NotImplementedError

    def pieces(self) -> Iterator[bytes]:
        raise NotImplementedError

    def write(self, source: Path) -> None:
        self.write_pieces(_blocks(source, self.piece_bytes), source.stat().st_size)

    def read(self) -> int:
        return sum(len(piece) for piece in self.pieces())

    def remove(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release the connection."""


class FloorClient(RawClient):
    """A raw client plus only what a verified store or restore cannot skip: the floor of ours.

    Writing reads the source around the page cache (a model is on the disk) and puts every byte
    through SHA-256; reading puts every byte through CRC-32 and SHA-256 and writes it around the page
    cache into a file, fsynced (:func:`bench.bare_stream.write_verified`). No zip, no manifest, no
    metadata, no gRPC, no CLI."""

    def __init__(self, raw: RawClient, directory: Path) -> None:
        self.raw, self.directory = raw, directory

    def write(self, source: Path) -> None:
        self.raw.write_pieces(_hashed(read_pieces(source, self.raw.piece_bytes)), source.stat().st_size)

    def read(self) -> int:
        return write_verified(self.raw.pieces(), self.directory, hash_pieces=True)

    def remove(self) -> None:
        self.raw.remove()


def _blocks(source: Path, size: int) -> Iterator[bytes]:
    with source.open("rb") as f:
        while block := f.read(size):
            yield block


def _hashed(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """``pieces`` as they are, hashed on a thread of their own meanwhile (as the agent hashes what it stores)."""
    sha = BackgroundSha256()
    for piece in pieces:
        sha.update(piece)
        yield piece
    sha.hexdigest()


class RawMySQL(RawClient):
    """pymysql over TCP as the agent's user: the same slices in one transaction, then an unbuffered SELECT."""

    def __init__(self, settings: dict[str, Any], slice_bytes: int, timeout: float) -> None:
        self.piece_bytes = slice_bytes
        self.conn = pymysql.connect(
            host=settings["host"],
            port=int(settings["port"]),
            user=settings["user"],
            password=settings["password"],
            database=settings["database"],
            autocommit=True,
            connect_timeout=10,
            read_timeout=int(timeout),
            write_timeout=int(timeout),
        )
        with self.conn.cursor() as cur:
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {MYSQL_RAW_TABLE}"
                " (id INT NOT NULL PRIMARY KEY, content LONGBLOB NOT NULL) ENGINE=InnoDB"
            )

    def write_pieces(self, pieces: Iterable[bytes], size: int) -> None:
        self.conn.begin()
        with self.conn.cursor() as cur:
            for index, piece in enumerate(pieces):
                cur.execute(f"INSERT INTO {MYSQL_RAW_TABLE} (id, content) VALUES (%s, %s)", (index, piece))
        self.conn.commit()

    def pieces(self) -> Iterator[bytes]:
        cur = self.conn.cursor(pymysql.cursors.SSCursor)
        try:
            cur.execute(f"SELECT content FROM {MYSQL_RAW_TABLE} ORDER BY id")
            for (content,) in cur:
                yield content
        finally:
            cur.close()

    def remove(self) -> None:
        with self.conn.cursor() as cur:
            cur.execute(f"DELETE FROM {MYSQL_RAW_TABLE}")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            with self.conn.cursor() as cur:
                cur.execute(f"DROP TABLE IF EXISTS {MYSQL_RAW_TABLE}")
            self.conn.close()


class RawRedis(RawClient):
    """redis-py: a non-transactional pipeline of SETs of 1 MiB chunks (sent every 16 MiB), then pipelined GETs."""

    def __init__(self, settings: dict[str, Any], timeout: float) -> None:
        self.client = redis.Redis(
            host=settings["host"],
            port=int(settings["port"]),
            db=int(settings.get("db", 0)),
            password=settings.get("password"),
            protocol=2,
            socket_connect_timeout=10,
            socket_timeout=timeout,
        )
        self.count = 0

    def _name(self, index: int) -> str:
        return f"bench:raw:{index}"

    piece_bytes = REDIS_CHUNK

    def write_pieces(self, pieces: Iterable[bytes], size: int) -> None:
        pipe = self.client.pipeline(transaction=False)
        queued = 0
        self.count = 0
        for index, chunk in enumerate(pieces):
            pipe.set(self._name(index), chunk)
            self.count, queued = index + 1, queued + len(chunk)
            if queued >= REDIS_PIPELINE_BYTES:
                pipe.execute()
                queued = 0
        pipe.execute()

    def pieces(self) -> Iterator[bytes]:
        per_batch = REDIS_PIPELINE_BYTES // REDIS_CHUNK
        for start in range(0, self.count, per_batch):
            pipe = self.client.pipeline(transaction=False)
            for index in range(start, min(self.count, start + per_batch)):
                pipe.get(self._name(index))
            yield from pipe.execute()

    def remove(self) -> None:
        names = [self._name(i) for i in range(self.count)]
        for start in range(0, len(names), 1024):
            self.client.delete(*names[start : start + 1024])

    def close(self) -> None:
        self.client.close()


class RawCos(RawClient):
    """The COS SDK: ``put_object`` streaming the file in one PUT, or ``upload_file`` (multipart, threads)."""

    def __init__(self, settings: dict[str, Any], timeout: float, multipart: bool) -> None:
        from qcloud_cos import CosConfig, CosS3Client

        config = dict(settings)
        self.bucket = str(config.pop("Bucket"))
        self.client = CosS3Client(CosConfig(Timeout=int(timeout), **config), retry=1)
        self.multipart = multipart
        self.key = f"bench/raw-{'multipart' if multipart else 'put'}.zip"

    def write(self, source: Path) -> None:
        if self.multipart:
            self.client.upload_file(
                Bucket=self.bucket, Key=self.key, LocalFilePath=str(source), PartSize=COS_PART_MB, MAXThread=COS_THREADS
            )
        else:
            with source.open("rb") as body:
                self.client.put_object(Bucket=self.bucket, Key=self.key, Body=body)

    def write_pieces(self, pieces: Iterable[bytes], size: int) -> None:
        """One streamed PUT of ``pieces`` (``put_object`` reads them through a file-like object)."""
        self.client.put_object(Bucket=self.bucket, Key=self.key, Body=_PieceReader(pieces, size))

    def pieces(self) -> Iterator[bytes]:
        answer = self.client.get_object(Bucket=self.bucket, Key=self.key)
        yield from answer["Body"].get_stream(chunk_size=READ_BLOCK)

    def remove(self) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.key)


class _PieceReader(io.RawIOBase):
    """A readable file of ``size`` bytes over an iterator of pieces: what an HTTP client streams a body
    from (its length gives the request's Content-Length)."""

    def __init__(self, pieces: Iterable[bytes], size: int) -> None:
        self._pieces = iter(pieces)
        self._held = memoryview(b"")
        self._size = size

    def __len__(self) -> int:
        return self._size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._held:
            piece = next(self._pieces, None)
            if piece is None:
                return 0
            self._held = memoryview(piece)
        count = min(len(buffer), len(self._held))
        buffer[:count] = self._held[:count]
        self._held = self._held[count:]
        return count


# One engine --------------------------------------------------------------------------------------


def write_conf(path: Path, body: dict[str, Any]) -> Path:
    """A FATE conf file (JSON) at ``path``."""
    path.write_text(json.dumps(body, indent=4), encoding="utf-8")
    return path


class Settler:
    """Waits, before each timed operation, until the engine's server has finished the background work the
    previous operation left behind — InnoDB purging the rows a store replaced or a raw client deleted,
    Redis freeing unlinked values lazily — so every operation, ours and the raw client's alike, starts on a
    quiet server instead of paying for its predecessor. Polls with a deadline; says so if it passes."""

    def __init__(self, engine: str, server: Any, settings: dict[str, Any]) -> None:
        self._mysql: Any = None
        self._redis: redis.Redis | None = None
        if isinstance(server, services.MariaDB):
            self._mysql = server.root_connection()  # the engine's user may not read InnoDB's status
        elif engine == "redis":
            self._redis = redis.Redis(
                host=settings["host"], port=int(settings["port"]), password=settings.get("password"), protocol=2
            )
        self.late = 0

    def _pending(self) -> int:
        if self._mysql is not None:
            with self._mysql.cursor() as cur:
                cur.execute("SHOW ENGINE INNODB STATUS")
                status = str(cur.fetchone()[2])
            found = re.search(r"History list length (\d+)", status)
            return int(found.group(1)) if found else 0
        if self._redis is not None:
            return int(self._redis.info("memory").get("lazyfree_pending_objects", 0))
        return 0

    def __call__(self) -> None:
        deadline = time.monotonic() + SETTLE_DEADLINE_S
        while self._pending() > 0:
            if time.monotonic() > deadline:
                self.late += 1
                return
            time.sleep(SETTLE_POLL_S)

    def close(self) -> None:
        for client in (self._mysql, self._redis):
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()


def _timed_raw(op: Op, watch: PeakWatch, action: Callable[[], object]) -> None:
    """Time one raw-client call; the watched servers' peaks and CPU, and this process's CPU, come with it."""
    os.sync()
    watch.reset()
    own_cpu = cpu_seconds(os.getpid())
    start = time.perf_counter()
    action()
    seconds = time.perf_counter() - start
    cpu = {**watch.cpu_used(), "bench (raw client)": cpu_seconds(os.getpid()) - own_cpu}
    op.add(seconds, watch.peaks_kib(), cpu)


def run_engine(engine: str, prepared: Prepared, runs: int, workdir: Path, op_timeout: float) -> EngineResult:
    began = time.perf_counter()
    root = workdir / engine
    notes: list[str] = []
    model_id, version = prepared.spec.model_id, prepared.spec.version
    keys = {"role": ROLE, "party_id": PARTY_ID, "model_id": model_id, "model_version": version}
    conf_dir = root / "conf"
    conf_dir.mkdir(parents=True)
    import_conf = write_conf(conf_dir / "import.json", {**keys, "file": str(prepared.archive), "force_update": False})
    store_conf = write_conf(conf_dir / "store.json", {**keys, "force_update": True})
    restore_conf = write_conf(conf_dir / "restore.json", {**keys, "force_update": False})
    delete_args = [
        "model",
        "delete",
        "--model-id",
        model_id,
        "--model-version",
        version,
        "-r",
        ROLE,
        "-p",
        str(PARTY_ID),
    ]

    with contextlib.ExitStack() as stack:
        server: Any = stack.enter_context(services.engine_server(engine, root / "server", PASSWORD))
        settings: dict[str, Any] = server.settings()
        federation = LocalFederation.start(
            root / "federation", extra_conf={"model_store_address": {"storage": engine, **settings}}
        )
        stack.callback(federation.stop)
        pids = {name: pid for name, pid in federation.pids().items() if name in ("coordinator", AGENT)}
        pids[SERVER_NAMES[engine]] = server.process.pid
        watch = PeakWatch(pids)
        flow = Flow(federation.address, watch, op_timeout)
        log(f"{engine}: server pid {server.process.pid}, federation at {federation.address}: {pids}")

        flow.run("model", "import", "-c", str(import_conf))
        flow.run("model", "export", "-c", str(store_conf), "--to-database")

        # The bytes the registry stored, read back through the engine: the raw client's payload.
        store = open_store(engine, settings)
        stack.callback(store.close)
        key = StoreKey(party_model_id(ROLE, PARTY_ID, model_id), version)
        stored_copy = root / "stored.zip"
        with stored_copy.open("wb") as out:
            for piece in store.open(key):
                out.write(piece)
        stored_bytes = stored_copy.stat().st_size
        raws: list[tuple[str, RawClient]]
        if isinstance(store, MySQLModelStore):
            slice_bytes = store.slice_bytes
            raws = [("pymysql", RawMySQL(settings, slice_bytes, op_timeout))]
            notes.append(
                f"mysql slices are {slice_bytes} B (from max_allowed_packet, as the engine sizes them), not 8 MiB"
            )
        elif engine == "redis":
            raws = [("redis-py", RawRedis(settings, op_timeout))]
        else:
            raws = [
                ("cos put_object", RawCos(settings, op_timeout, multipart=False)),
                ("cos upload_file", RawCos(settings, op_timeout, multipart=True)),
            ]
        for _, raw in raws:
            stack.callback(raw.close)
        floor_dir = root / "floor"
        floor_dir.mkdir()
        first_label, first_raw = raws[0]
        floor_label = f"{first_label} floor"

        store_op = Op("store", stored_bytes)
        restore_op = Op("restore", stored_bytes)
        raw_ops = [
            (Op(f"{label} write", stored_bytes), Op(f"{label} read", stored_bytes), raw)
            for label, raw in [*raws, (floor_label, FloorClient(first_raw, floor_dir))]
        ]

        settle = Settler(engine, server, settings)
        stack.callback(settle.close)

        def registry_round(record: bool) -> None:
            settle()
            stored = flow.run("model", "export", "-c", str(store_conf), "--to-database")
            flow.run(*delete_args)
            settle()
            restored = flow.run("model", "import", "-c", str(restore_conf), "--from-database")
            if record:
                store_op.add_measured(stored)
                restore_op.add_measured(restored)

        def raw_round(write_op: Op, read_op: Op, raw: RawClient, record: bool) -> None:
            scratch = Op("scratch", stored_bytes)
            settle()
            _timed_raw(write_op if record else scratch, watch, lambda: raw.write(stored_copy))
            got: list[int] = []
            settle()
            _timed_raw(read_op if record else scratch, watch, lambda: got.append(raw.read()))
            if got[0] != stored_bytes:
                raise RuntimeError(f"{read_op.name} read {got[0]} B, {stored_bytes} B were written")
            raw.remove()

        # Warm-up, untimed: the first pass over a GiB of fresh pages is slow on this VM, and the servers
        # grow their buffers (InnoDB's buffer pool and redo log, redis's and moto's allocations) once.
        start = time.perf_counter()
        registry_round(record=False)
        for write_op, read_op, raw in raw_ops:
            raw_round(write_op, read_op, raw, record=False)
        log(f"{engine}: warm-up {time.perf_counter() - start:.1f} s")
        setup_seconds = time.perf_counter() - began
        startup = statistics.median(flow.startup_seconds() for _ in range(MIN_BASELINE_RUNS))

        # Interleaved, so a disturbance lands on both sides alike; the raw client runs at least 3 times.
        for index in range(max(runs, MIN_BASELINE_RUNS)):
            if index < runs:
                registry_round(record=True)
                log(
                    f"{engine} run {index + 1}: store {store_op.seconds[-1]:.2f} s,"
                    f" restore {restore_op.seconds[-1]:.2f} s"
                )
            for write_op, read_op, raw in raw_ops:
                raw_round(write_op, read_op, raw, record=True)
                log(
                    f"{engine} baseline {index + 1}: {write_op.name} {write_op.seconds[-1]:.2f} s,"
                    f" {read_op.name} {read_op.seconds[-1]:.2f} s"
                )
        notes.extend(watch.notes())
        if settle.late:
            notes.append(f"{settle.late} operations started before the server had settled ({SETTLE_DEADLINE_S:.0f} s)")

    *clients, (floor_write, floor_read, _) = raw_ops
    best_write = min((w for w, _, _ in clients), key=lambda op: op.median)
    best_read = min((r for _, r, _ in clients), key=lambda op: op.median)
    ratios = {
        f"store / {best_write.name}": best_write.median / store_op.median,
        f"restore / {best_read.name}": best_read.median / restore_op.median,
    }
    floors = {
        f"{floor_write.name} / {best_write.name}": best_write.median / floor_write.median,
        f"{floor_read.name} / {best_read.name}": best_read.median / floor_read.median,
        f"store / {floor_write.name}": floor_write.median / store_op.median,
        f"restore / {floor_read.name}": floor_read.median / restore_op.median,
    }
    ops = [store_op, restore_op, *(op for w, r, _ in raw_ops for op in (w, r))]
    total = time.perf_counter() - began
    return EngineResult(engine, stored_bytes, ops, ratios, floors, notes, setup_seconds, total, startup)


# Report ------------------------------------------------------------------------------------------


def _row(op: Op) -> str:
    fastest, slowest = min(op.seconds), max(op.seconds)
    return (
        f"  {op.name:<22} {len(op.seconds):>4} {op.median:>9.3f} {fastest:>8.3f} {slowest:>8.3f}"
        f" {op.rate() / MIB:>9.1f} {op.rate(slowest) / MIB:>9.1f} {op.rate(fastest) / MIB:>9.1f}"
    )


def report(prepared: Prepared, results: Sequence[EngineResult], size_mib: int, total: float) -> dict[str, Any]:
    lines = [
        "",
        f"model {prepared.spec.party_model_id(ROLE, PARTY_ID)} {prepared.spec.version}: version directory"
        f" {prepared.version_bytes / MIB:.1f} MiB (--size-mib {size_mib}); {os.cpu_count()} CPUs",
        "store = flow model export --to-database (force_update), restore = flow model import --from-database",
        "(after an untimed flow model delete); wall time of the flow process, its start-up included",
    ]
    for result in results:
        lines += [
            "",
            f"{result.engine}: stored object {result.stored_bytes} B ({result.stored_bytes / MIB:.1f} MiB)",
            f"  {'operation':<22} {'runs':>4} {'median s':>9} {'min s':>8} {'max s':>8}"
            f" {'MiB/s':>9} {'min MiB/s':>9} {'max MiB/s':>9}",
            "  " + "-" * 84,
            *(_row(op) for op in result.ops),
            f"  ratio to the raw client (median throughput; target >= {RATIO_TARGET}):",
            *(
                f"    {name:<40} {value:.3f}  {'ok' if value >= RATIO_TARGET else 'BELOW TARGET'}"
                for name, value in result.ratios.items()
            ),
            "  floors (the raw client plus only the disk read, SHA-256 and durable write a verified store or restore"
            " needs): floor / raw is the best a ratio can be here in this run, ours / floor what the registry adds:",
            *(f"    {name:<40} {value:.3f}" for name, value in result.floors.items()),
            "  peak memory, MiB, max across runs (VmHWM reset before each operation;"
            f" target flow and agent < {MEMORY_TARGET_MIB:.0f}):",
        ]
        for op in result.ops:
            cells = "  ".join(
                f"{name} {kib / KIB:.1f}"
                + (" (OVER)" if name in ("flow", AGENT) and kib / KIB >= MEMORY_TARGET_MIB else "")
                for name, kib in op.peaks_kib.items()
            )
            lines.append(f"    {op.name:<22} {cells}")
        lines.append(f"  flow CLI start-up alone (flow --help, no RPC): median {result.flow_startup_s:.3f} s")
        lines.append("  CPU seconds, median across runs:")
        for op in result.ops:
            cells = "  ".join(f"{name} {statistics.median(used):.2f}" for name, used in op.cpu.items())
            lines.append(f"    {op.name:<22} {cells}   (wall {op.median:.2f})")
        lines.extend(f"  note: {note}" for note in result.notes)
        lines.append(
            f"  {result.engine}: set-up and warm-up {result.setup_seconds:.1f} s, all {result.total_seconds:.1f} s"
        )
    lines.append(f"whole benchmark {total:.1f} s")
    print("\n".join(lines), flush=True)
    figures: dict[str, Any] = {
        "benchmark": "store_restore",
        "cpus": os.cpu_count(),
        "size_mib": size_mib,
        "version_dir_bytes": prepared.version_bytes,
        "engines": {r.engine: r.summary() for r in results},
        "ratio_target": RATIO_TARGET,
        "memory_target_mib": MEMORY_TARGET_MIB,
        "total_s": round(total, 1),
    }
    print(json.dumps(figures), flush=True)
    return figures


# Driver ------------------------------------------------------------------------------------------


def run(size_mib: int, runs: int, engines: Sequence[str], workdir: Path, keep: bool = False) -> dict[str, Any]:
    began = time.perf_counter()
    op_timeout = 120.0 + size_mib / 2  # ~2 MiB/s at worst, so a hung operation cannot stall the run
    log(f"workdir {workdir}; preparing a {size_mib} MiB model")
    prepared = prepare(workdir, size_mib * MIB)
    log(f"prepared in {time.perf_counter() - began:.1f} s: archive {prepared.archive_bytes / MIB:.1f} MiB")
    results = []
    for engine in engines:
        results.append(run_engine(engine, prepared, runs, workdir, op_timeout))
        if not keep:  # the engine's data and the restored copies: a few GiB of disk at 1 GiB
            shutil.rmtree(workdir / engine, ignore_errors=True)
    return report(prepared, results, size_mib, time.perf_counter() - began)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.store_restore", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="model size in MiB (default 1024)")
    parser.add_argument("--runs", type=int, default=3, help="timed store/restore runs per engine (default 3)")
    parser.add_argument(
        "--engines", default=",".join(ENGINES), help=f"comma-separated, of {', '.join(ENGINES)} (default all)"
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="parent of the scratch directory (default: the system temp dir)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if not engines or any(e not in ENGINES for e in engines):
        parser.error(f"--engines takes a comma-separated list of {', '.join(ENGINES)}")
    if args.size_mib < 1 or args.runs < 1:
        parser.error("--size-mib and --runs must be at least 1")
    with scratch_dir("bench-store-restore-", args.workdir, args.keep) as workdir:
        run(args.size_mib, args.runs, engines, workdir, args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
