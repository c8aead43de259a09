"""``service_conf.yaml``: typed, frozen configuration for the coordinator, the agents and the CLI.

Every key has an embedded default, so an empty file (or none) runs a two-party federation on
one machine. A bad value fails at start with the file, the dotted key and what is wrong.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fate_registry.errors import RegistryError
from fate_registry.identity import validate_name

DEFAULT_CONF_PATH = Path("conf/service_conf.yaml")
DEFAULT_DATA_DIR = Path(".fate_registry")
STORAGE_ENGINES = ("tencent_cos", "mysql", "redis")
# Default ports: clear of FATE's standard ports on one host (FATE-Flow 9360/9380, rollsite 9370,
# FATE-Serving 8000/8059/8879, FATE-Board 8080), since a registry usually runs beside a FATE deployment.
# The agents' defaults count up from FIRST_AGENT_PORT, one per configured party.
COORDINATOR_PORT = 9460
FIRST_AGENT_PORT = 9461
# FATE-Flow 1.11's HTTP API on the coordinator (coordinator.http).
COORDINATOR_HTTP_PORT = 9450


class ConfError(Exception):
    """A configuration problem, naming the file and the key."""

    def __init__(self, path: Path | None, key: str, problem: str) -> None:
        where = f"{path}: " if path else ""
        super().__init__(f"{where}{key}: {problem}" if key else f"{where}{problem}")


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class TlsConf:
    """TLS for one program; no ``cert`` and no ``ca`` means plain text (the default, for loopback).

    As a server: ``cert`` and ``key`` are its own PEM certificate chain and key; with
    ``require_client_cert`` every caller must present a certificate signed by ``ca``, and the
    program's API admits only callers whose certificate names one of ``allow`` (its subject CN or a
    SAN entry). As a client: ``ca`` verifies the server, and ``cert``/``key`` are presented when set.
    """

    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None
    require_client_cert: bool = False
    allow: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return self.cert is not None or self.ca is not None


PLAINTEXT = TlsConf()
# The name an agent admits by default: the subject CN that scripts/make_test_certs.sh gives the coordinator.
COORDINATOR_IDENTITY = "coordinator"


@dataclass(frozen=True)
class DatabaseConf:
    """SQLite by default; MySQL with FATE's keys (name, user, password, host, port, ...)."""

    engine: Literal["sqlite", "mysql"] = "sqlite"
    path: Path | None = None
    name: str = ""
    user: str = ""
    password: str = field(default="", repr=False)
    host: str = "127.0.0.1"
    port: int = 3306
    max_connections: int = 10
    stale_timeout: int = 30


@dataclass(frozen=True)
class PartyConf:
    party_id: str
    address: Address
    data_dir: Path
    database: DatabaseConf
    servings: tuple[str, ...] = ()
    # Where FATE-Serving pulls model bytes (POST /v1/model/transfer); port 0 picks a free port.
    transfer_address: Address = Address("127.0.0.1", 0)
    # The URL FATE-Serving is told to pull from, when it differs from http(s)://<transfer_address>.
    transfer_url: str = ""
    # The agent's gRPC server and (with a cert) its HTTPS transfer endpoint; ``allow`` names the coordinator.
    tls: TlsConf = PLAINTEXT
    # How the agent reaches its FATE-Serving instances (a client side: ca, and cert/key for mutual TLS).
    serving_tls: TlsConf = PLAINTEXT
    # The route to the agent: direct to ``address`` (None), or through FATE's proxy (rollsite,
    # nginx, OSX) at this address, every call wrapped in an eggroll Packet (fate_serving.md §4).
    proxy: Address | None = None

    @property
    def model_cache_dir(self) -> Path:
        return self.data_dir / "model_local_cache"


@dataclass(frozen=True)
class HttpAuthConf:
    """FATE-Flow's client authentication: with ``switch`` every request the registry serves must carry
    FATE's HMAC-SHA1 signature made with this key pair (``APP_KEY``, ``SIGNATURE`` headers)."""

    switch: bool = False
    http_app_key: str = ""
    http_secret_key: str = field(default="", repr=False)


@dataclass(frozen=True)
class HttpConf:
    """FATE-Flow 1.11's HTTP API, served by the coordinator for FATE's own clients (docs/fate_http.md).

    ``upstream`` is a FATE-Flow base URL (``http://host:9380``): every request the registry does not serve
    is forwarded to it unchanged; empty: such a request is answered with FATE-Flow's not-found answer.
    """

    enabled: bool = True
    address: Address = Address("127.0.0.1", COORDINATOR_HTTP_PORT)
    upstream: str = ""
    authentication: HttpAuthConf = HttpAuthConf()


@dataclass(frozen=True)
class CoordinatorConf:
    address: Address
    data_dir: Path
    database: DatabaseConf
    # Per-party call deadline for short calls, in seconds.
    call_timeout: float = 30.0
    # Per-party deadline for a deploy's prepare step, which copies model files.
    deploy_timeout: float = 600.0
    # Seconds between passes of the background duties (resending unconfirmed decisions, settling transfers).
    maintenance_period: float = 60.0
    # The client API's server, and the client side of every call to the agents (same cert, key and ca).
    tls: TlsConf = PLAINTEXT
    # Replicas sharing one MySQL catalog: each names itself (default: host name and port) and renews a
    # lease every third of ``lease_seconds``; another replica takes over its unfinished operations
    # only once the lease has expired.
    replica_id: str = ""
    lease_seconds: float = 30.0
    # Threads serving RPCs (bench.catalog_scale measures the choice).
    rpc_workers: int = 32
    # The party whose site the coordinator runs at: the ``src`` of the Packets it sends through a proxy.
    party_id: str = ""
    http: HttpConf = HttpConf()


@dataclass(frozen=True)
class ModelStoreConf:
    """Which engine ``model_store_address`` names; its settings are typed by the engine itself."""

    storage: str
    settings: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class LimitsConf:
    # Archives larger than this, or with more entries, are refused before anything is written.
    max_archive_bytes: int = 64 * 1024**3
    max_archive_entries: int = 100_000
    # An entry (or the archive's deflated entries together) inflating more than this many bytes per compressed
    # byte is refused as a zip bomb, once past 1 MiB. Zeros deflate ~1030-fold; generated FATE models reach 14.6
    # (a 14 KiB JSON sidecar at zlib level 9), and 3.0 in entries past 256 KiB.
    max_expansion_ratio: int = 200
    # Bytes per streamed message, chosen by measurement (DESIGN §5.4).
    upload_chunk_bytes: int = 256 * 1024
    download_chunk_bytes: int = 1024 * 1024


@dataclass(frozen=True)
class ServiceConf:
    path: Path | None
    data_dir: Path
    coordinator: CoordinatorConf
    parties: Mapping[str, PartyConf]
    enable_model_store: bool = False
    model_store: ModelStoreConf | None = None
    limits: LimitsConf = LimitsConf()

    def party(self, party_id: str) -> PartyConf:
        try:
            return self.parties[party_id]
        except KeyError:
            known = ", ".join(sorted(self.parties)) or "none"
            raise ConfError(self.path, "parties", f"party {party_id} is not configured (known: {known})") from None


class _Section:
    """Reads one mapping of the YAML document, remembering the dotted key for messages.

    Every key the parser asks for is noted, so that :meth:`refuse_unknown` can stop a program whose
    conf holds a key nothing reads (a misspelling would otherwise leave its default in force silently).
    """

    def __init__(self, path: Path | None, key: str, data: Any) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfError(path, key or "(top level)", f"expected a mapping, got {type(data).__name__}")
        self.path, self.key, self.data = path, key, data
        self.read: set[str] = set()
        self.children: list[_Section] = []

    def _name(self, key: str) -> str:
        return f"{self.key}.{key}" if self.key else key

    def _fail(self, key: str, problem: str) -> ConfError:
        return ConfError(self.path, self._name(key), problem)

    def get(self, key: str, default: Any = None) -> Any:
        """The raw value of ``key``, which thereby counts as a known key."""
        self.read.add(key)
        return self.data.get(key, default)

    def section(self, key: str) -> _Section:
        child = _Section(self.path, self._name(key), self.get(key))
        self.children.append(child)
        return child

    def refuse_unknown(self) -> None:
        """Fail on the first key of this section or its sub-sections that the parser never read."""
        for key in self.data:
            if str(key) not in self.read:
                close = difflib.get_close_matches(str(key), sorted(self.read), n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]}?" if close else f" (known: {', '.join(sorted(self.read))})"
                raise self._fail(str(key), f"unknown key{hint}")
        for child in self.children:
            child.refuse_unknown()

    def text(self, key: str, default: str) -> str:
        value = self.get(key, default)
        if value is None:
            return default
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise self._fail(key, f"expected a string, got {type(value).__name__}")
        return str(value)

    def integer(self, key: str, default: int, minimum: int = 0) -> int:
        value = self.get(key, default)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, f"expected an integer, got {value!r}")
        if value < minimum:
            raise self._fail(key, f"must be at least {minimum}, got {value}")
        return value

    def number(self, key: str, default: float) -> float:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise self._fail(key, f"expected a positive number, got {value!r}")
        return float(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise self._fail(key, f"expected true or false, got {value!r}")
        return value

    def address(self, key: str, default: str) -> Address:
        text = self.text(key, default)
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise self._fail(key, f"expected host:port, got {text!r}")
        return Address(host.strip("[]") if host.startswith("[") else host, int(port))

    def path_or(self, key: str, default: Path) -> Path:
        text = self.text(key, "")
        return Path(text) if text else default

    def names(self, key: str) -> tuple[str, ...]:
        value = self.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
            raise self._fail(key, "expected a list of names")
        return tuple(str(v) for v in value)


def tls_section(section: _Section, default_allow: tuple[str, ...] = ()) -> TlsConf:
    """A ``tls`` mapping: a cert needs its key, mutual TLS needs a ca. The files are read by the program
    that uses them (:mod:`fate_registry.tls`), so one conf can name files that exist on one machine only."""
    files = {key: Path(text) if (text := section.text(key, "")) else None for key in ("cert", "key", "ca")}
    if (files["cert"] is None) != (files["key"] is None):
        raise ConfError(section.path, section.key, "cert and key go together: set both or neither")
    require = section.flag("require_client_cert", False)
    if require and files["ca"] is None:
        raise ConfError(
            section.path, section._name("ca"), "require_client_cert needs the ca of the client certificates"
        )
    return TlsConf(
        cert=files["cert"],
        key=files["key"],
        ca=files["ca"],
        require_client_cert=require,
        allow=section.names("allow") or (default_allow if require else ()),
    )


def _database(section: _Section, default_path: Path) -> DatabaseConf:
    engine = section.text("engine", "sqlite")
    if engine not in ("sqlite", "mysql"):
        raise ConfError(section.path, f"{section.key}.engine", f"expected sqlite or mysql, got {engine!r}")
    if engine == "sqlite":
        mysql_only = sorted(set(map(str, section.data)) & MYSQL_ONLY_KEYS)
        if mysql_only:
            raise ConfError(section.path, section._name(mysql_only[0]), "applies to engine mysql only, not sqlite")
        return DatabaseConf(engine="sqlite", path=section.path_or("path", default_path))
    name = section.text("name", "")
    if not name:
        raise ConfError(section.path, f"{section.key}.name", "the MySQL database name is required")
    return DatabaseConf(
        engine="mysql",
        name=name,
        user=section.text("user", "root"),
        password=section.text("password", ""),
        host=section.text("host", "127.0.0.1"),
        port=section.integer("port", 3306, minimum=1),
        max_connections=section.integer("max_connections", 10, minimum=1),
        stale_timeout=section.integer("stale_timeout", 30, minimum=1),
    )


def _party(parties: _Section, party_id: str, data_dir: Path, index: int) -> PartyConf:
    try:
        validate_name(party_id, "party id")
    except RegistryError as exc:
        raise ConfError(parties.path, f"parties.{party_id}", str(exc)) from None
    section = parties.section(party_id)
    party_dir = section.path_or("data_dir", data_dir / "parties" / party_id)
    servings = section.get("servings") or []
    if not isinstance(servings, list) or not all(isinstance(s, str) for s in servings):
        raise ConfError(parties.path, f"parties.{party_id}.servings", "expected a list of host:port strings")
    address = section.address("address", f"127.0.0.1:{FIRST_AGENT_PORT + index}")
    return PartyConf(
        party_id=party_id,
        address=address,
        data_dir=party_dir,
        database=_database(section.section("database"), party_dir / "agent.db"),
        servings=tuple(servings),
        transfer_address=section.address("transfer_address", f"{address.host}:0"),
        transfer_url=section.text("transfer_url", ""),
        tls=tls_section(section.section("tls"), (COORDINATOR_IDENTITY,)),
        serving_tls=tls_section(section.section("serving_tls")),
        proxy=section.address("proxy", "") if section.get("proxy") else None,
    )


def _http(section: _Section, coordinator: Address) -> HttpConf:
    """``coordinator.http``; a coordinator on a free port (0) gets its HTTP API on a free port too, unless set."""
    port = COORDINATOR_HTTP_PORT if coordinator.port else 0
    auth = section.section("authentication")
    authentication = HttpAuthConf(
        switch=auth.flag("switch", False),
        http_app_key=auth.text("http_app_key", ""),
        http_secret_key=auth.text("http_secret_key", ""),
    )
    if authentication.switch and not (authentication.http_app_key and authentication.http_secret_key):
        raise ConfError(section.path, auth.key, "switch is true: http_app_key and http_secret_key are both needed")
    upstream = section.text("upstream", "").rstrip("/")
    parsed = urllib.parse.urlsplit(upstream)
    if upstream and (parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.path or parsed.query):
        raise ConfError(section.path, section._name("upstream"), f"expected http(s)://host:port, got {upstream!r}")
    return HttpConf(
        enabled=section.flag("enabled", True),
        address=section.address("address", f"{coordinator.host}:{port}"),
        upstream=upstream,
        authentication=authentication,
    )


MYSQL_ONLY_KEYS = frozenset({"name", "user", "password", "host", "port", "max_connections", "stale_timeout"})
DEFAULT_PARTIES: Mapping[str, Any] = {"9999": {}, "10000": {}}


def parse(document: Any, path: Path | None = None, data_dir: Path | None = None) -> ServiceConf:
    """Build a :class:`ServiceConf` from a parsed YAML document; ``data_dir`` overrides the file's."""
    top = _Section(path, "", document)
    base = top.path_or("data_dir", DEFAULT_DATA_DIR)  # read even when overridden: a key that is read is known
    base = data_dir or base
    coordinator = top.section("coordinator")
    coordinator_dir = base / "coordinator"
    parties_raw = top.get("parties", DEFAULT_PARTIES)
    if not isinstance(parties_raw, Mapping) or not parties_raw:
        raise ConfError(path, "parties", "expected a mapping of party id to its agent settings")
    parties_section = _Section(path, "parties", {str(k): v for k, v in parties_raw.items()})
    top.children.append(parties_section)
    parties = {pid: _party(parties_section, pid, base, i) for i, pid in enumerate(parties_section.data)}
    addresses = [str(p.address) for p in parties.values() if p.address.port]
    if len(set(addresses)) != len(addresses):
        raise ConfError(path, "parties", "two parties share one agent address")
    store: ModelStoreConf | None = None
    store_section = top.section("model_store_address")
    if store_section.data:
        storage = store_section.text("storage", "")
        if storage not in STORAGE_ENGINES:
            raise ConfError(
                path, "model_store_address.storage", f"expected one of {', '.join(STORAGE_ENGINES)}, got {storage!r}"
            )
        store = ModelStoreConf(storage, {k: v for k, v in store_section.data.items() if k != "storage"})
        store_section.read.update(map(str, store_section.data))  # the engine's own reader refuses unknown keys
    enable_store = top.flag("enable_model_store", False)
    if enable_store and store is None:
        raise ConfError(path, "enable_model_store", "is true but model_store_address is not set")
    limits = top.section("limits")
    coordinator_tls = tls_section(coordinator.section("tls"))
    if coordinator_tls.require_client_cert and not coordinator_tls.allow:
        raise ConfError(path, "coordinator.tls.allow", "require_client_cert needs the names of the clients allowed")
    coordinator_address = coordinator.address("address", f"127.0.0.1:{COORDINATOR_PORT}")
    conf = ServiceConf(
        path=path,
        data_dir=base,
        coordinator=CoordinatorConf(
            address=coordinator_address,
            data_dir=coordinator_dir,
            database=_database(coordinator.section("database"), coordinator_dir / "registry.db"),
            call_timeout=coordinator.number("call_timeout", 30.0),
            deploy_timeout=coordinator.number("deploy_timeout", 600.0),
            maintenance_period=coordinator.number("maintenance_period", 60.0),
            tls=coordinator_tls,
            replica_id=coordinator.text("replica_id", ""),
            lease_seconds=coordinator.number("lease_seconds", 30.0),
            rpc_workers=coordinator.integer("rpc_workers", 32, minimum=1),
            party_id=coordinator.text("party_id", next(iter(parties))),
            http=_http(coordinator.section("http"), coordinator_address),
        ),
        parties=parties,
        enable_model_store=enable_store,
        model_store=store,
        limits=LimitsConf(
            max_archive_bytes=limits.integer("max_archive_bytes", LimitsConf.max_archive_bytes, minimum=1),
            max_archive_entries=limits.integer("max_archive_entries", LimitsConf.max_archive_entries, minimum=1),
            max_expansion_ratio=limits.integer("max_expansion_ratio", LimitsConf.max_expansion_ratio, minimum=1),
            upload_chunk_bytes=limits.integer("upload_chunk_bytes", LimitsConf.upload_chunk_bytes, minimum=1024),
            download_chunk_bytes=limits.integer("download_chunk_bytes", LimitsConf.download_chunk_bytes, minimum=1024),
        ),
    )
    top.refuse_unknown()
    return conf


def load(path: Path | str | None = None, data_dir: Path | str | None = None) -> ServiceConf:
    """Load ``path`` (default: ``$FATE_REGISTRY_CONF`` or ``conf/service_conf.yaml`` if present)."""
    chosen = Path(path) if path else Path(os.environ.get("FATE_REGISTRY_CONF", DEFAULT_CONF_PATH))
    override = Path(data_dir) if data_dir else None
    if not chosen.exists():
        if path:
            raise ConfError(chosen, "", "the configuration file does not exist")
        return parse({}, None, override)
    import yaml  # here, not at the top: flow reads a conf only when no address was given

    try:
        document = yaml.safe_load(chosen.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfError(chosen, "", f"cannot read the file ({exc.__class__.__name__})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfError(chosen, "", f"invalid YAML{where}") from None
    return parse(document, chosen, override)


def with_addresses(conf: ServiceConf, coordinator: Address | None, parties: Mapping[str, Address]) -> ServiceConf:
    """A copy with actual bound addresses (after servers bound port 0)."""
    new_parties = {pid: dataclasses.replace(p, address=parties.get(pid, p.address)) for pid, p in conf.parties.items()}
    new_coord = dataclasses.replace(conf.coordinator, address=coordinator or conf.coordinator.address)
    return dataclasses.replace(conf, coordinator=new_coord, parties=new_parties)
