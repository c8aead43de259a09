"""Where the ``flow`` CLI finds the coordinator.

In this order: the ``--address`` option, ``$FATE_REGISTRY_ADDRESS``, the settings saved by
``flow init`` (``$FATE_REGISTRY_CLIENT_CONF``, else ``~/.config/fate-registry/flow.json``), and
last the coordinator address of the service conf (``$FATE_REGISTRY_CONF``,
``./conf/service_conf.yaml`` or the embedded default ``127.0.0.1:9460``).

The address may list several coordinator replicas, comma-separated (``h1:9360,h2:9360``): the
client fails over between them (see :class:`client.sdk.RegistryClient`).

``flow init`` saves either ``{"ip", "port"}`` or, like FATE's ``flow init -c``,
``{"server_conf_path"}`` naming a service conf whose coordinator address is used.

TLS: ``$FATE_REGISTRY_TLS_CA`` (the CA that signed the coordinator's certificate) turns it on;
``$FATE_REGISTRY_TLS_CERT`` and ``$FATE_REGISTRY_TLS_KEY`` (the client's own certificate and key)
add mutual TLS. When none of the three is set, the files ``flow init --tls-ca/--tls-cert/--tls-key``
saved (as ``{"tls": {"ca", "cert", "key"}}``, absolute paths) are used, whatever the address. Without
either the CLI talks plain text, the embedded default on loopback.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from client.sdk import TransferMode
from fate_registry import config
from fate_registry.errors import Reason, RegistryError, Retcode

ADDRESS_ENV = "FATE_REGISTRY_ADDRESS"
TRANSFER_ENV = "FATE_REGISTRY_TRANSFER"
CLIENT_CONF_ENV = "FATE_REGISTRY_CLIENT_CONF"
TLS_CA_ENV, TLS_CERT_ENV, TLS_KEY_ENV = "FATE_REGISTRY_TLS_CA", "FATE_REGISTRY_TLS_CERT", "FATE_REGISTRY_TLS_KEY"
TLS_ENVS = (TLS_CA_ENV, TLS_CERT_ENV, TLS_KEY_ENV)
TLS_ENV_NAMES = tuple(f"${name}" for name in TLS_ENVS)
TLS_FILES = ("ca", "cert", "key")  # the keys of the saved "tls" object, in the order of the variables above
DEFAULT_CLIENT_CONF = Path("~/.config/fate-registry/flow.json")


@dataclass(frozen=True)
class ClientSettings:
    """What the CLI needs to reach the coordinator."""

    address: str  # host:port, or several replicas' comma-separated
    # Deadline of each unary call, in seconds; archive transfers have none.
    timeout: float = 60.0
    # How archive bytes travel ($FATE_REGISTRY_TRANSFER): straight to the party's agent when it can be
    # reached (auto, the default), always straight (direct), or through the coordinator (relay).
    transfer: TransferMode = "auto"
    # The client side of TLS ($FATE_REGISTRY_TLS_CA, _CERT, _KEY); plain text when none is set.
    tls: config.TlsConf = config.PLAINTEXT


def _settings_error(message: str) -> RegistryError:
    return RegistryError(Reason.INVALID_ARGUMENT, message, retcode=Retcode.EXCEPTION_ERROR)


def client_conf_path(env: Mapping[str, str] = os.environ) -> Path:
    """The file ``flow init`` writes."""
    return Path(env.get(CLIENT_CONF_ENV) or DEFAULT_CLIENT_CONF).expanduser()


def join_address(ip: str, port: int) -> str:
    """``host:port``, with an IPv6 literal in brackets."""
    return f"[{ip}]:{port}" if ":" in ip and not ip.startswith("[") else f"{ip}:{port}"


def service_conf_address(path: Path | None) -> str:
    """The coordinator address of the service conf at ``path`` (None: ``fate_registry.config``'s default)."""
    try:
        address = config.load(path).coordinator.address
    except config.ConfError as exc:
        raise _settings_error(str(exc)) from None
    return join_address(address.host, address.port)


def _saved(path: Path) -> dict[str, Any]:
    """What ``flow init`` saved in ``path``; empty when nothing was saved."""
    try:
        saved: Any = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise _settings_error(f"cannot read the flow CLI settings {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise _settings_error(
            f"the flow CLI settings {path} are not valid JSON (line {exc.lineno}, column {exc.colno}); "
            "run flow init again"
        ) from None
    if not isinstance(saved, dict):
        raise _settings_error(f"the flow CLI settings {path} must hold a JSON object; run flow init again")
    return saved


def _saved_address(saved: Mapping[str, Any]) -> str | None:
    """The address in ``flow init``'s settings, or None when they hold none."""
    if saved.get("server_conf_path"):
        return service_conf_address(Path(str(saved["server_conf_path"])))
    ip, port = saved.get("ip"), saved.get("port")
    if ip and isinstance(port, int) and not isinstance(port, bool):
        return join_address(str(ip), port)
    return None


def _saved_tls(saved: Mapping[str, Any], path: Path) -> config.TlsConf:
    """The TLS files in ``flow init``'s settings (read from ``path``); plain text when they hold none."""
    tls = saved.get("tls") or {}
    where = f"the flow CLI settings {path}: "
    if not isinstance(tls, dict) or not all(isinstance(tls.get(k, ""), str) for k in TLS_FILES):
        raise _settings_error(f"{where}tls must map ca, cert and key to paths; run flow init again")
    return tls_conf([tls.get(k) for k in TLS_FILES], names=[f"tls.{k}" for k in TLS_FILES], where=where)


def resolve(address: str | None = None, env: Mapping[str, str] = os.environ) -> ClientSettings:
    """The client settings.

    ``address`` (the ``--address`` option) wins, then the sources above; TLS from the environment when any of its
    variables is set, else as ``flow init`` saved it.
    """
    path = client_conf_path(env)
    saved = _saved(path)
    chosen = address or env.get(ADDRESS_ENV) or _saved_address(saved) or service_conf_address(None)
    transfer = env.get(TRANSFER_ENV, "auto")
    if transfer not in get_args(TransferMode):
        raise _settings_error(f"${TRANSFER_ENV} must be auto, direct or relay, not {transfer!r}")
    from_env = [env.get(name) for name in TLS_ENVS]
    tls = tls_conf(from_env) if any(from_env) else _saved_tls(saved, path)
    return ClientSettings(address=chosen, transfer=transfer, tls=tls)  # type: ignore[arg-type]


def tls_conf(paths: Sequence[str | None], names: Sequence[str] = TLS_ENV_NAMES, where: str = "") -> config.TlsConf:
    """A client's TLS from the paths of its CA, certificate and key (empty or None: not given).

    A certificate needs its key. ``names`` are what the three are called in an error (the variables, ``flow init``'s
    options or the saved keys), ``where`` what the error starts with.
    """
    ca, cert, key = (Path(p) if p else None for p in paths)
    if (cert is None) != (key is None):
        raise _settings_error(f"{where}{names[1]} and {names[2]} go together: set both or neither")
    return config.TlsConf(cert=cert, key=key, ca=ca)


def save(saved: Mapping[str, Any], env: Mapping[str, str] = os.environ) -> Path:
    """Write ``flow init``'s settings, replacing earlier ones; the file appears whole or not at all."""
    path = client_conf_path(env)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(json.dumps(dict(saved), indent=4) + "\n", encoding="utf-8")
    os.replace(temp, path)
    return path


def reset(env: Mapping[str, str] = os.environ) -> Path:
    """Forget what ``flow init`` saved (``flow init --reset``)."""
    path = client_conf_path(env)
    path.unlink(missing_ok=True)
    return path
