"""``service_conf.yaml``: one typed schema for the coordinator, the agents and the CLI.

Every key and its default is written once, in the sections below (pydantic dataclasses, checked by
tests/unit/test_conf_docs.py against docs/configuration.md). An empty file (or none) runs a two-party
federation on one machine. A bad value or an unknown key fails at start with the file, the dotted key
and what is wrong (:mod:`fate_registry.schema`). A few defaults depend on other keys (a party's address
and directories, the coordinator's party): the schema leaves them unset and :func:`parse` derives them.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    GetCoreSchemaHandler,
    SecretStr,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic.dataclasses import dataclass as section
from pydantic_core import core_schema

from fate_registry.archives_conf import ArchivesConf
from fate_registry.errors import RegistryError
from fate_registry.identity import validate_name
from fate_registry.schema import (
    SECTION,
    Flag,
    Names,
    OptionalPath,
    Seconds,
    Secret,
    Section,
    Text,
    conf_error,
    explain,
    list_of,
    optional_path,
)

DEFAULT_CONF_PATH = Path("conf/service_conf.yaml")
DEFAULT_DATA_DIR = Path(".fate_registry")
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
    """``host:port`` (``[::1]:9460`` for IPv6); port 0 picks a free port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, value: Any) -> Address:
        if isinstance(value, Address):
            return value
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise conf_error(f"expected host:port, got {type(value).__name__}")
        text = str(value)
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise conf_error(f"expected host:port, got {text!r}")
        return cls(host.strip("[]") if host.startswith("[") else host, int(port))

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls.parse, serialization=core_schema.plain_serializer_function_ser_schema(str)
        )


OptionalAddress = Annotated[Address | None, BeforeValidator(lambda value: value or None)]
"""An address whose default is derived from other keys (empty or null: derived)."""


@section(frozen=True, config=SECTION)
class TlsConf(Section):
    """TLS for one program; no ``cert`` and no ``ca`` means plain text (the default, for loopback).

    As a server: ``cert`` and ``key`` are its own PEM certificate chain and key; with
    ``require_client_cert`` every caller must present a certificate signed by ``ca``, and the
    program's API admits only callers whose certificate names one of ``allow`` (its subject CN or a
    SAN entry). As a client: ``ca`` verifies the server, and ``cert``/``key`` are presented when set.
    The files are read by the program that uses them (:mod:`fate_registry.tls`), so one conf can name
    files that exist on one machine only.
    """

    cert: OptionalPath = None
    key: OptionalPath = None
    ca: OptionalPath = None
    require_client_cert: Flag = False
    allow: Names = ()

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if (self.cert is None) != (self.key is None):
            raise conf_error("cert and key go together: set both or neither")
        if self.require_client_cert and self.ca is None:
            raise conf_error("require_client_cert needs the ca of the client certificates", "ca")
        return self

    @property
    def enabled(self) -> bool:
        return self.cert is not None or self.ca is not None


PLAINTEXT = TlsConf()
# The name an agent admits by default: the subject CN that scripts/make_test_certs.sh gives the coordinator.
COORDINATOR_IDENTITY = "coordinator"
Count = Annotated[int, Field(strict=True, ge=1)]
MYSQL_ONLY_KEYS = frozenset({"name", "user", "password", "host", "port", "max_connections", "stale_timeout"})


@section(frozen=True, config=SECTION)
class DatabaseConf(Section):
    """SQLite by default (``path``, derived from the data dir when unset); MySQL with FATE's keys."""

    engine: Literal["sqlite", "mysql"] = "sqlite"
    path: OptionalPath = None
    name: Text = ""
    user: Text = "root"
    password: Secret = SecretStr("")
    host: Text = "127.0.0.1"
    port: Count = 3306
    max_connections: Count = 10
    stale_timeout: Count = 30

    @model_validator(mode="before")
    @classmethod
    def _engine_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("engine", "sqlite") == "sqlite":
            mysql_only = sorted(set(map(str, data)) & MYSQL_ONLY_KEYS)
            if mysql_only:
                raise conf_error("applies to engine mysql only, not sqlite", mysql_only[0])
        return data

    @model_validator(mode="after")
    def _named(self) -> Self:
        if self.engine == "mysql" and not self.name:
            raise conf_error("the MySQL database name is required", "name")
        return self


@section(frozen=True, config=SECTION)
class HttpAuthConf(Section):
    """FATE-Flow's HTTP authentication: requests signed with the app key and the secret key."""

    switch: Flag = False
    http_app_key: Text = ""
    http_secret_key: Secret = SecretStr("")

    @model_validator(mode="after")
    def _keys_given(self) -> Self:
        if self.switch and not (self.http_app_key and self.http_secret_key.get_secret_value()):
            raise conf_error("switch is true: http_app_key and http_secret_key are both needed")
        return self


def _base_url(url: str) -> str:
    """A FATE-Flow base URL, ``http(s)://host:port``, without a trailing slash; empty: none."""
    parsed = urllib.parse.urlsplit(url)
    if url and (
        parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.path.strip("/") or parsed.query
    ):
        raise conf_error(f"expected http(s)://host:port, got {url!r}")
    return url.rstrip("/")


@section(frozen=True, config=SECTION)
class HttpConf(Section):
    """The coordinator's FATE-Flow HTTP API; ``upstream`` is a FATE-Flow base URL (``http://host:9380``)
    that requests the registry does not serve go to (empty: none)."""

    enabled: Flag = True
    # Derived: the coordinator's host and COORDINATOR_HTTP_PORT, or a free port (0) when the coordinator's is.
    address: OptionalAddress = None
    upstream: Annotated[Text, AfterValidator(_base_url)] = ""
    authentication: HttpAuthConf = HttpAuthConf()
    # The read-only web dashboard at /dashboard/; derived: on when the address is a loopback one.
    dashboard: Flag | None = None

    @property
    def bound_address(self) -> Address:
        """The address to serve on, once :func:`parse` has derived it."""
        if self.address is None:
            raise ValueError("coordinator.http.address is derived by config.parse")
        return self.address


@section(frozen=True, config=SECTION)
class CoordinatorConf(Section):
    """The coordinator: its client API, its catalog, and how it calls the agents."""

    address: Address = Address("127.0.0.1", COORDINATOR_PORT)
    # Per-party call deadline for short calls, in seconds.
    call_timeout: Seconds = 30.0
    # Per-party deadline for a deploy's prepare step, which copies model files.
    deploy_timeout: Seconds = 600.0
    # Seconds between passes of the background duties (resending unconfirmed decisions, settling transfers).
    maintenance_period: Seconds = 60.0
    # The client API's server, and the client side of every call to the agents (same cert, key and ca).
    tls: TlsConf = PLAINTEXT
    # Replicas sharing one MySQL catalog: each names itself (default: host name and port) and renews a
    # lease every third of ``lease_seconds``; another replica takes over its unfinished operations
    # only once the lease has expired.
    replica_id: Text = ""
    lease_seconds: Seconds = 30.0
    # Threads serving RPCs (bench.catalog_scale measures the choice).
    rpc_workers: Count = 32
    # The party whose site the coordinator runs at: the ``src`` of the Packets it sends through a proxy
    # (derived: the first party).
    party_id: Text = ""
    # The catalog (sqlite derived: <data_dir>/coordinator/registry.db).
    database: DatabaseConf = DatabaseConf()
    http: HttpConf = HttpConf()

    @model_validator(mode="after")
    def _clients_named(self) -> Self:
        if self.tls.require_client_cert and not self.tls.allow:
            raise conf_error("require_client_cert needs the names of the clients allowed", "tls.allow")
        return self


@section(frozen=True, config=SECTION)
class PartySection(Section):
    """One party's agent as the file has it; :class:`PartyConf` is the same with every default derived."""

    # Derived: 127.0.0.1 and FIRST_AGENT_PORT plus the party's place in the file.
    address: OptionalAddress = None
    # Derived: <data_dir>/parties/<party id>.
    data_dir: OptionalPath = None
    database: DatabaseConf = DatabaseConf()
    servings: Annotated[tuple[str, ...], list_of("host:port strings")] = ()
    # Where FATE-Serving pulls model bytes (POST /v1/model/transfer); derived: the agent's host, port 0 (free).
    transfer_address: OptionalAddress = None
    # The URL FATE-Serving is told to pull from, when it differs from http(s)://<transfer_address>.
    transfer_url: Text = ""
    # The agent's gRPC server and (with a cert) its HTTPS transfer endpoint; ``allow`` names the coordinator.
    tls: TlsConf = PLAINTEXT
    # How the agent reaches its FATE-Serving instances (a client side: ca, and cert/key for mutual TLS).
    serving_tls: TlsConf = PLAINTEXT
    # The route to the agent: direct to ``address`` (None), or through FATE's proxy (rollsite,
    # nginx, OSX) at this address, every call wrapped in an eggroll Packet (fate_serving.md §4).
    proxy: OptionalAddress = None


StorageEngine = Literal["mysql", "redis", "tencent_cos"]
"""The model-store engines: FATE's ``model_store_address.storage`` (party_agent/storage opens each)."""


@section(frozen=True, config=SECTION)
class ModelStoreConf(Section):
    """Which engine ``model_store_address`` names; its other keys are typed by the engine itself
    (party_agent/storage/config.py), and kept out of every repr."""

    storage: StorageEngine
    settings: Mapping[str, Any] = field(default_factory=dict, repr=False)


def _store_address(value: Any) -> Any:
    """FATE's flat ``model_store_address`` as the engine and its settings; empty is none."""
    if not value or not isinstance(value, Mapping):
        return value or None
    return {"storage": value.get("storage"), "settings": {k: v for k, v in value.items() if k != "storage"}}


@section(frozen=True, config=SECTION)
class LimitsConf(Section):
    # Archives larger than this, or with more entries, are refused before anything is written.
    max_archive_bytes: Count = 64 * 1024**3
    max_archive_entries: Count = 100_000
    # An entry (or the archive's deflated entries together) inflating more than this many bytes per compressed
    # byte is refused as a zip bomb, once past 1 MiB. Zeros deflate ~1030-fold; generated FATE models reach 14.6
    # (a 14 KiB JSON sidecar at zlib level 9), and 3.0 in entries past 256 KiB.
    max_expansion_ratio: Count = 200
    # Bytes per streamed message, chosen by measurement (DESIGN §5.4).
    upload_chunk_bytes: Annotated[int, Field(strict=True, ge=1024)] = 256 * 1024
    download_chunk_bytes: Annotated[int, Field(strict=True, ge=1024)] = 1024 * 1024


def _party_id(value: Any) -> str:
    try:
        return validate_name(
            str(value) if isinstance(value, int) and not isinstance(value, bool) else value, "party id"
        )
    except RegistryError as exc:
        raise conf_error(str(exc)) from None


def _some_parties(parties: dict[str, PartySection]) -> dict[str, PartySection]:
    if not parties:
        raise conf_error("expected a mapping of party id to its agent settings")
    return parties


PartyId = Annotated[str, BeforeValidator(_party_id)]


@section(frozen=True, config=SECTION)
class ServiceFile(Section):
    """The whole file."""

    # All state, unless a key says otherwise; ``fate-registry up --data-dir`` overrides it.
    data_dir: Annotated[Path, BeforeValidator(lambda value: optional_path(value) or DEFAULT_DATA_DIR)] = (
        DEFAULT_DATA_DIR
    )
    coordinator: CoordinatorConf = CoordinatorConf()
    # One agent per party id, in this order.
    parties: Annotated[dict[PartyId, PartySection], AfterValidator(_some_parties)] = field(
        default_factory=lambda: {"9999": PartySection(), "10000": PartySection()}
    )
    enable_model_store: Flag = False
    model_store_address: Annotated[ModelStoreConf | None, BeforeValidator(_store_address)] = None
    limits: LimitsConf = LimitsConf()
    archives: ArchivesConf = ArchivesConf()

    @model_validator(mode="after")
    def _store_named(self) -> Self:
        if self.enable_model_store and self.model_store_address is None:
            raise conf_error("is true but model_store_address is not set", "enable_model_store")
        return self


_FILE = TypeAdapter(ServiceFile)


@dataclass(frozen=True)
class PartyConf:
    """One party's agent, every default derived (see :class:`PartySection` for what each key means)."""

    party_id: str
    address: Address
    data_dir: Path
    database: DatabaseConf
    servings: tuple[str, ...]
    transfer_address: Address
    transfer_url: str
    tls: TlsConf
    serving_tls: TlsConf
    proxy: Address | None

    @property
    def model_cache_dir(self) -> Path:
        return self.data_dir / "model_local_cache"


@dataclass(frozen=True)
class ServiceConf:
    """The file's settings with every default derived; ``path`` is the file (None: the embedded defaults)."""

    path: Path | None
    data_dir: Path
    coordinator: CoordinatorConf
    parties: Mapping[str, PartyConf]
    enable_model_store: bool
    model_store: ModelStoreConf | None
    limits: LimitsConf
    archives: ArchivesConf

    def party(self, party_id: str) -> PartyConf:
        try:
            return self.parties[party_id]
        except KeyError:
            known = ", ".join(sorted(self.parties)) or "none"
            raise ConfError(self.path, "parties", f"party {party_id} is not configured (known: {known})") from None


def _sqlite_under(database: DatabaseConf, default_path: Path) -> DatabaseConf:
    if database.engine != "sqlite" or database.path is not None:
        return database
    return dataclasses.replace(database, path=default_path)


def _party(party_id: str, party: PartySection, data_dir: Path, index: int) -> PartyConf:
    party_dir = party.data_dir or data_dir / "parties" / party_id
    address = party.address or Address("127.0.0.1", FIRST_AGENT_PORT + index)
    tls = party.tls
    if tls.require_client_cert and not tls.allow:
        tls = dataclasses.replace(tls, allow=(COORDINATOR_IDENTITY,))
    return PartyConf(
        party_id=party_id,
        address=address,
        data_dir=party_dir,
        database=_sqlite_under(party.database, party_dir / "agent.db"),
        servings=party.servings,
        transfer_address=party.transfer_address or Address(address.host, 0),
        transfer_url=party.transfer_url,
        tls=tls,
        serving_tls=party.serving_tls,
        proxy=party.proxy,
    )


def _loopback(address: Address) -> bool:
    """A host only this machine reaches: the dashboard is on by default there."""
    try:
        return address.host == "localhost" or ipaddress.ip_address(address.host).is_loopback
    except ValueError:
        return False


def parse(document: Any, path: Path | None = None, data_dir: Path | None = None) -> ServiceConf:
    """Build a :class:`ServiceConf` from a parsed YAML document; ``data_dir`` overrides the file's."""
    try:
        file = _FILE.validate_python(document)
    except ValidationError as exc:
        key, problem = explain(exc)
        raise ConfError(path, key or "(top level)", problem) from None
    base = data_dir or file.data_dir
    parties = {pid: _party(pid, party, base, i) for i, (pid, party) in enumerate(file.parties.items())}
    addresses = [str(p.address) for p in parties.values() if p.address.port]
    if len(set(addresses)) != len(addresses):
        raise ConfError(path, "parties", "two parties share one agent address")
    coordinator_address = file.coordinator.address
    http_address = file.coordinator.http.address or Address(
        coordinator_address.host, COORDINATOR_HTTP_PORT if coordinator_address.port else 0
    )
    coordinator = dataclasses.replace(
        file.coordinator,
        http=dataclasses.replace(
            file.coordinator.http,
            address=http_address,
            dashboard=_loopback(http_address)
            if file.coordinator.http.dashboard is None
            else file.coordinator.http.dashboard,
        ),
        party_id=file.coordinator.party_id or next(iter(parties)),
        database=_sqlite_under(file.coordinator.database, base / "coordinator" / "registry.db"),
    )
    return ServiceConf(
        path=path,
        data_dir=base,
        coordinator=coordinator,
        parties=parties,
        enable_model_store=file.enable_model_store,
        model_store=file.model_store_address,
        limits=file.limits,
        archives=file.archives,
    )


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
