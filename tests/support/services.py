"""Real backing services for tests and benchmarks: MariaDB, redis-server and a COS-compatible S3 server.

Each runs as a child process bound to 127.0.0.1 on a free port, keeps everything in the directory
it is given, is polled for readiness with a deadline (and fails at once if the process dies), and
is stopped by its PID::

    with mariadb(tmp / "db") as db, redis_server(tmp / "r", password="pw") as r, cos_emulator(tmp / "cos") as cos:
        open_store("mysql", db.settings()); open_store("redis", r.settings(ex=60))
        open_store("tencent_cos", cos.settings())

Every handle can ``stop()`` and ``start()`` its server again on the same port and data (MariaDB and
Redis keep their data across that; the COS emulator, moto, keeps it in memory only).

The COS emulator is moto's S3 backend behind :class:`CosShim`, which makes it answer what the
unmodified cos-python-sdk-v5 sends and expects: COS signatures checked against the configured
SecretId/SecretKey, ``x-cos-*`` headers translated, and error bodies in COS's shape. Run it alone
with ``python -m tests.support.services cos-emulator --port PORT`` and the credentials in
``COS_EMULATOR_SECRET_ID`` / ``COS_EMULATOR_SECRET_KEY``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote
from xml.sax.saxutils import escape

import pymysql

from tests.support.processes import support_module

HOST = "127.0.0.1"
START_DEADLINE = 60.0
STOP_DEADLINE = 15.0
_POLL_INTERVAL = 0.02
_SBIN = ("/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin")


class ServiceError(RuntimeError):
    """A service could not be started; the message ends with the tail of its log."""


def free_port() -> int:
    """A loopback port free right now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def find_binary(name: str) -> str:
    found = shutil.which(name) or next((f"{d}/{name}" for d in _SBIN if os.access(f"{d}/{name}", os.X_OK)), None)
    if found is None:
        raise ServiceError(
            f"{name} is not installed: apt-get install -y --no-install-recommends mariadb-server redis-server "
            "(scripts/test.sh does this on a fresh machine)"
        )
    return found


@dataclass
class ServerProcess:
    """One server process we started; stopped by its PID."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = field(default=None, repr=False)
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return None if self.popen is None else self.popen.pid

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=None if self.env is None else {**os.environ, **self.env},
            )

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, deadline: float = STOP_DEADLINE) -> None:
        """SIGTERM, wait up to ``deadline`` seconds, then SIGKILL."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=deadline)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=deadline)
        self.popen = None

    def failure(self, what: str) -> ServiceError:
        tail = ""
        with contextlib.suppress(OSError):
            tail = self.log_path.read_text(errors="replace")[-2000:]
        return ServiceError(f"{self.name} {what}; the end of {self.log_path}:\n{tail}")

    def wait_ready(self, check: Callable[[], bool], deadline: float = START_DEADLINE) -> None:
        """Poll ``check`` until it is true; fail at once if the process exits, or at the deadline."""
        end = time.monotonic() + deadline
        while True:
            if not self.alive():
                raise self.failure("exited during start-up")
            with contextlib.suppress(Exception):
                if check():
                    return
            if time.monotonic() > end:
                self.stop()
                raise self.failure(f"was not ready within {deadline:.0f} s")
            time.sleep(_POLL_INTERVAL)


def _tcp_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


# ---------------------------------------------------------------------------------------------- MariaDB


@dataclass
class MariaDB:
    """A private MariaDB server with one database and one password-protected user on it."""

    root: Path
    port: int
    database: str
    user: str
    password: str = field(repr=False)
    process: ServerProcess
    host: str = HOST

    @property
    def socket_path(self) -> Path:
        return self.root / "mysqld.sock"

    def settings(self) -> dict[str, Any]:
        """FATE's ``model_store_address`` for this server (``storage`` excluded)."""
        return {
            "database": self.database,
            "user": self.user,
            "password": self.password,
            "host": self.host,
            "port": self.port,
        }

    def root_connection(self) -> pymysql.Connection[Any]:
        """A root connection over the unix socket, autocommit, on the database."""
        return pymysql.connect(
            unix_socket=str(self.socket_path), user="root", database=self.database, autocommit=True, connect_timeout=5
        )

    def start(self) -> None:
        self.process.start()
        self.process.wait_ready(lambda: _mariadb_ready(self.socket_path))

    def stop(self) -> None:
        self.process.stop()


def _mariadb_ready(sock: Path) -> bool:
    pymysql.connect(unix_socket=str(sock), user="root", connect_timeout=1).close()
    return True


@contextlib.contextmanager
def mariadb(
    root: Path, *, database: str = "fate_model", user: str = "fate", password: str | None = None
) -> Iterator[MariaDB]:
    """A fresh MariaDB in ``root`` (install-db, start, create ``database`` and ``user``); stopped on exit."""
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    datadir = root / "data"
    install = subprocess.run(
        [
            find_binary("mariadb-install-db"),
            "--no-defaults",
            f"--datadir={datadir}",
            "--user=root",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=START_DEADLINE,
        check=False,
    )
    if install.returncode != 0:
        raise ServiceError(f"mariadb-install-db failed: {install.stderr.decode(errors='replace')[-2000:]}")
    port = free_port()
    argv = [
        find_binary("mariadbd"),
        "--no-defaults",
        f"--datadir={datadir}",
        f"--socket={root / 'mysqld.sock'}",
        f"--port={port}",
        f"--bind-address={HOST}",
        "--user=root",
        f"--pid-file={root / 'mysqld.pid'}",
        f"--log-error={root / 'error.log'}",
        "--skip-name-resolve",
        "--skip-log-bin",
    ]
    server = MariaDB(
        root=root,
        port=port,
        database=database,
        user=user,
        password=password or secrets.token_urlsafe(12),
        process=ServerProcess("mariadbd", argv, root / "error.log"),
    )
    try:
        server.start()
        conn = pymysql.connect(unix_socket=str(server.socket_path), user="root", autocommit=True, connect_timeout=5)
        with conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
            cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (user, server.password))
            cur.execute(f"GRANT ALL PRIVILEGES ON `{database}`.* TO %s@'%%'", (user,))
        yield server
    finally:
        server.stop()


# ------------------------------------------------------------------------------------------------ Redis


@dataclass
class RedisServer:
    """A private redis-server, optionally with ``requirepass``; AOF on, so a restart keeps the data."""

    root: Path
    port: int
    password: str | None = field(repr=False)
    process: ServerProcess
    host: str = HOST

    def settings(self, *, db: int = 0, ex: int | None = None) -> dict[str, Any]:
        """FATE's ``model_store_address`` for this server (``storage`` excluded)."""
        out: dict[str, Any] = {"host": self.host, "port": self.port, "db": db}
        if self.password is not None:
            out["password"] = self.password
        if ex is not None:
            out["ex"] = ex
        return out

    def start(self) -> None:
        self.process.start()
        self.process.wait_ready(lambda: _redis_ready(self.port, self.password))

    def stop(self) -> None:
        self.process.stop()


def _redis_ready(port: int, password: str | None) -> bool:
    with socket.create_connection((HOST, port), timeout=1) as sock:
        if password is not None:
            sock.sendall(f"AUTH {password}\r\n".encode())
            if not sock.recv(64).startswith(b"+OK"):
                return False
        sock.sendall(b"PING\r\n")
        return sock.recv(64).startswith(b"+PONG")


@contextlib.contextmanager
def redis_server(root: Path, *, password: str | None = None) -> Iterator[RedisServer]:
    """A fresh redis-server with its data in ``root``; ``password`` sets requirepass. Stopped on exit."""
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [
        find_binary("redis-server"),
        "--port",
        str(port),
        "--bind",
        HOST,
        "--dir",
        str(root),
        "--logfile",
        str(root / "redis.log"),
        "--save",
        "",
        "--appendonly",
        "yes",
        "--daemonize",
        "no",
    ]
    if password is not None:
        argv += ["--requirepass", password]
    server = RedisServer(root, port, password, ServerProcess("redis-server", argv, root / "redis.log"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------- COS emulator


@dataclass
class CosEmulator:
    """moto's S3 behind :class:`CosShim`; ``bucket`` exists, other buckets do not."""

    root: Path
    port: int
    bucket: str
    secret_id: str
    secret_key: str = field(repr=False)
    process: ServerProcess
    region: str = "ap-guangzhou"
    host: str = HOST

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """FATE's ``model_store_address`` for this server (``storage`` excluded), with ``overrides``."""
        return {
            "Region": self.region,
            "SecretId": self.secret_id,
            "SecretKey": self.secret_key,
            "Bucket": self.bucket,
            "Scheme": "http",
            "IP": self.host,
            "Port": self.port,
            **overrides,
        }

    def client(self) -> Any:
        """A raw ``CosS3Client`` on this server."""
        from qcloud_cos import CosConfig, CosS3Client

        settings = self.settings()
        settings.pop("Bucket")
        return CosS3Client(CosConfig(**settings))

    def start(self) -> None:
        """Start (again: moto keeps nothing across a restart) and create ``bucket``."""
        self.process.start()
        self.process.wait_ready(lambda: _tcp_open(self.port))
        self.client().create_bucket(Bucket=self.bucket)

    def stop(self) -> None:
        self.process.stop()


@contextlib.contextmanager
def cos_emulator(root: Path, *, bucket: str = "fate-model", secret_id: str = "AKIDtest") -> Iterator[CosEmulator]:
    """A fresh COS-compatible server with ``bucket`` created; stopped on exit."""
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    secret_key = secrets.token_urlsafe(16)
    port = free_port()
    argv = [*support_module("services"), "cos-emulator", "--port", str(port)]
    env_argv = ["env", f"COS_EMULATOR_SECRET_ID={secret_id}", f"COS_EMULATOR_SECRET_KEY={secret_key}", *argv]
    server = CosEmulator(
        root, port, bucket, secret_id, secret_key, ServerProcess("cos-emulator", env_argv, root / "cos.log")
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()


EngineServer = MariaDB | RedisServer | CosEmulator


def engine_server(engine: str, root: Path, password: str) -> contextlib.AbstractContextManager[EngineServer]:
    """The server of a model-store engine (``mysql``, ``redis``, ``tencent_cos``: FATE's ``storage``) in ``root``;
    ``password`` is the MySQL user's and Redis's (the COS emulator makes its own secret key)."""
    if engine == "mysql":
        return mariadb(root, password=password)
    if engine == "redis":
        return redis_server(root, password=password)
    return cos_emulator(root)


# ----------------------------------------------------------------------------------- plain S3 server


@dataclass
class S3Server:
    """moto's S3 server as it is (AWS's protocol, path-style): what FATE's ``minio`` storage type talks to.

    moto accepts any key pair: unlike the COS emulator, this server does not check signatures.
    """

    root: Path
    port: int
    process: ServerProcess
    access_key: str = "fate-access-key"
    secret_key: str = field(default="fate-secret-key", repr=False)
    host: str = HOST

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def minio_parameters(self) -> dict[str, Any]:
        """FATE's ``model_storage_parameters`` of ``model_storage_type: minio`` for this server."""
        return {
            "endpoint": self.endpoint,
            "access_key": self.access_key,
            "secret_key": self.secret_key,
            "secure": False,
        }

    def client(self) -> Any:
        import boto3

        return boto3.session.Session().client(
            "s3",
            endpoint_url=f"http://{self.endpoint}",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
        )

    def objects(self, bucket: str, prefix: str) -> dict[str, bytes]:
        """Every object under ``prefix`` and its bytes (none when the bucket does not exist)."""
        client = self.client()
        if bucket not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
            return {}
        listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents") or []
        return {o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}

    def delete(self, bucket: str, key: str) -> None:
        self.client().delete_object(Bucket=bucket, Key=key)


@contextlib.contextmanager
def s3_server(root: Path) -> Iterator[S3Server]:
    """A fresh, empty S3 server on a free loopback port; stopped on exit."""
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [*support_module("services"), "s3-server", "--port", str(port)]
    server = S3Server(root, port, ServerProcess("s3-server", argv, root / "s3.log"))
    try:
        server.process.start()
        server.process.wait_ready(lambda: _tcp_open(port))
        yield server
    finally:
        server.process.stop()


_AUTH_FIELD = re.compile(r"(q-[a-z-]+)=([^&]*)")


class CosShim:
    """WSGI middleware that lets moto's S3 app serve the COS SDK.

    - Checks the COS signature (``q-sign-algorithm=sha1&q-ak=…&q-signature=…``) against the one
      SecretId/SecretKey pair it was given: a wrong key gets 403 like COS.
    - Request headers: ``x-cos-meta-*`` → ``x-amz-meta-*``, ``x-cos-copy-source`` (``bucket.host/key``)
      → ``x-amz-copy-source`` (``/bucket/key``), ``x-cos-metadata-directive`` (Copy/Replaced) →
      ``x-amz-metadata-directive`` (COPY/REPLACE).
    - Response headers: ``x-amz-meta-*`` → ``x-cos-meta-*``; names in canonical case, since the SDK
      copies them into a plain dict (``Last-Modified``, ``ETag``).
    - Error bodies: the ``Code``, ``Message``, ``Resource`` and ``RequestId`` elements the SDK's parser needs.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]], secret_id: str, secret_key: str) -> None:
        self.app = app
        self.secret_id = secret_id
        self.secret_key = secret_key

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        denied = self._check_signature(environ)
        if denied is not None:
            return self._error(start_response, "403 Forbidden", denied, environ)
        for name in [k for k in environ if k.startswith("HTTP_X_COS_META_")]:
            environ["HTTP_X_AMZ_META_" + name[len("HTTP_X_COS_META_") :]] = environ.pop(name)
        source = environ.pop("HTTP_X_COS_COPY_SOURCE", None)
        if source is not None:
            host, _, path = source.partition("/")
            environ["HTTP_X_AMZ_COPY_SOURCE"] = f"/{host.split('.', 1)[0]}/{path}"
        directive = environ.pop("HTTP_X_COS_METADATA_DIRECTIVE", None)
        if directive is not None:
            environ["HTTP_X_AMZ_METADATA_DIRECTIVE"] = "REPLACE" if directive.lower() == "replaced" else "COPY"

        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], Any]:
            captured["status"], captured["headers"] = status, [(_canonical(k), v) for k, v in headers]
            if int(status.split()[0]) < 400:
                write: Callable[[bytes], Any] = start_response(status, captured["headers"], exc_info)
                return write
            return lambda _data: None

        body = self.app(environ, capture)
        if int(captured["status"].split()[0]) < 400:
            return body
        raw = b"".join(body)
        code = re.search(rb"<Code>([^<]*)</Code>", raw)
        message = re.search(rb"<Message>([^<]*)</Message>", raw)
        status = captured["status"]
        return self._error(
            start_response,
            status,
            (
                code.group(1).decode() if code else status.split(" ", 1)[-1],
                message.group(1).decode() if message else "",
            ),
            environ,
        )

    def _check_signature(self, environ: dict[str, Any]) -> tuple[str, str] | None:
        fields = dict(_AUTH_FIELD.findall(environ.get("HTTP_AUTHORIZATION", "")))
        if fields.get("q-ak") != self.secret_id:
            return "InvalidAccessKeyId", "The SecretId does not exist."
        try:
            path = environ.get("PATH_INFO", "/").encode("latin-1").decode("utf-8")
            query = {k.lower(): v for k, v in parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)}
            params = "&".join(
                f"{k}={_quote(query[k])}" for k in sorted(filter(None, fields["q-url-param-list"].split(";")))
            )
            headers = "&".join(
                f"{k}={_quote(_header(environ, k))}" for k in sorted(filter(None, fields["q-header-list"].split(";")))
            )
            text = f"{environ['REQUEST_METHOD'].lower()}\n{path}\n{params}\n{headers}\n"
            to_sign = f"sha1\n{fields['q-sign-time']}\n{hashlib.sha1(text.encode()).hexdigest()}\n"
            key = hmac.new(self.secret_key.encode(), fields["q-key-time"].encode(), hashlib.sha1).hexdigest()
            expected = hmac.new(key.encode(), to_sign.encode(), hashlib.sha1).hexdigest()
        except (KeyError, UnicodeError):
            return "AccessDenied", "Malformed Authorization."
        if not hmac.compare_digest(expected, fields.get("q-signature", "")):
            return "SignatureDoesNotMatch", "The calculated signature does not match."
        return None

    @staticmethod
    def _error(
        start_response: Callable[..., Any], status: str, error: tuple[str, str], environ: dict[str, Any]
    ) -> list[bytes]:
        code, message = error
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Error>'
            f"<Code>{escape(code)}</Code><Message>{escape(message or code)}</Message>"
            f"<Resource>{escape(environ.get('HTTP_HOST', '') + environ.get('PATH_INFO', '/'))}</Resource>"
            f"<RequestId>{secrets.token_hex(8)}</RequestId><TraceId>emulator</TraceId></Error>"
        ).encode()
        start_response(status, [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]


def _quote(value: str) -> str:
    return quote(value.encode(), "-_.~")


def _header(environ: dict[str, Any], name: str) -> str:
    key = name.upper().replace("-", "_")
    value = environ.get(key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}", "")
    return str(value).encode("latin-1").decode("utf-8")


def _canonical(name: str) -> str:
    lower = name.lower()
    if lower.startswith("x-amz-meta-"):
        return "x-cos-meta-" + lower[len("x-amz-meta-") :]
    if lower.startswith("x-"):
        return lower
    if lower == "etag":
        return "ETag"
    return "-".join(part.capitalize() for part in lower.split("-"))


def _serve_s3(port: int, shim: bool) -> None:
    """moto's S3 app on ``port``; behind :class:`CosShim` (credentials from the env) when ``shim``."""
    from moto.moto_server.werkzeug_app import MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    app: Callable[..., Iterable[bytes]] = create_backend_app("s3")
    if shim:
        app = CosShim(app, os.environ["COS_EMULATOR_SECRET_ID"], os.environ["COS_EMULATOR_SECRET_KEY"])
    server = make_server(HOST, port, app, threaded=True, request_handler=MotoRequestHandler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.services")
    sub = parser.add_subparsers(dest="command", required=True)
    cos = sub.add_parser("cos-emulator", help="serve the COS emulator on 127.0.0.1:PORT (credentials from the env)")
    cos.add_argument("--port", type=int, required=True)
    s3 = sub.add_parser("s3-server", help="serve moto's plain S3 on 127.0.0.1:PORT (no signature checks)")
    s3.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    _serve_s3(args.port, shim=args.command == "cos-emulator")


if __name__ == "__main__":
    main()
