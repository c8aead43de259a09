"""Typed engine settings, built from FATE's ``model_store_address`` keys exactly.

Secrets (passwords, SecretKey) are kept out of ``repr`` so they never reach a log line or an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from party_agent.storage.base import misconfigured

MYSQL_KEYS = ("database", "user", "password", "host", "port", "max_connections", "stale_timeout")
REDIS_KEYS = ("host", "port", "db", "password", "ex")
# model_store_address key -> CosConfig argument; Bucket is not a CosConfig argument.
COS_REQUIRED = ("Region", "SecretId", "SecretKey", "Bucket")
COS_OPTIONAL = ("Scheme", "Endpoint", "Domain", "IP", "Port", "Appid", "ServiceDomain")


class _Reader:
    """Reads one engine's settings, naming the offending key (never its value) on any error."""

    def __init__(self, engine: str, settings: Mapping[str, Any], known: tuple[str, ...]) -> None:
        self.engine = engine
        self.data = {k: v for k, v in settings.items() if k != "storage"}
        unknown = sorted(set(self.data) - set(known))
        if unknown:
            raise misconfigured(engine, f"unknown keys {', '.join(unknown)}; expected {', '.join(known)}")

    def text(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key, default)
        if value is None or value == "":
            raise misconfigured(self.engine, f"{key} is required")
        if not isinstance(value, str | int):
            raise misconfigured(self.engine, f"{key} must be a string")
        return str(value)

    def optional_text(self, key: str) -> str | None:
        return None if self.data.get(key) in (None, "") else self.text(key)

    def integer(self, key: str, default: int | None, minimum: int) -> int | None:
        value = self.data.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise misconfigured(self.engine, f"{key} must be an integer")
        try:
            number = int(value)
        except ValueError:
            raise misconfigured(self.engine, f"{key} must be an integer") from None
        if number < minimum:
            raise misconfigured(self.engine, f"{key} must be at least {minimum}")
        return number

    def required_integer(self, key: str, default: int, minimum: int) -> int:
        number = self.integer(key, default, minimum)
        assert number is not None
        return number


@dataclass(frozen=True)
class MySQLConfig:
    """``storage: mysql``. ``max_connections`` and ``stale_timeout`` mean what they mean to peewee's pool."""

    database: str
    user: str
    password: str = field(repr=False)
    host: str
    port: int = 3306
    max_connections: int = 8
    stale_timeout: int | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> MySQLConfig:
        r = _Reader("mysql", settings, MYSQL_KEYS)
        return cls(
            database=r.text("database"),
            user=r.text("user"),
            password=str(r.data.get("password") or ""),
            host=r.text("host"),
            port=r.required_integer("port", 3306, 1),
            max_connections=r.required_integer("max_connections", 8, 1),
            stale_timeout=r.integer("stale_timeout", None, 1),
        )


@dataclass(frozen=True)
class RedisConfig:
    """``storage: redis``. ``ex`` is the expiry in seconds of every stored key; None keeps them forever."""

    host: str
    port: int = 6379
    db: int = 0
    password: str | None = field(default=None, repr=False)
    ex: int | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}/{self.db}"

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> RedisConfig:
        r = _Reader("redis", settings, REDIS_KEYS)
        password = r.data.get("password")
        return cls(
            host=r.text("host"),
            port=r.required_integer("port", 6379, 1),
            db=r.required_integer("db", 0, 0),
            password=None if password in (None, "") else str(password),
            ex=r.integer("ex", None, 1),
        )


@dataclass(frozen=True)
class CosConfigSettings:
    """``storage: tencent_cos``. Every key but ``Bucket`` goes to the SDK's ``CosConfig`` unchanged."""

    region: str
    secret_id: str
    secret_key: str = field(repr=False)
    bucket: str
    scheme: str | None = None
    endpoint: str | None = None
    domain: str | None = None
    ip: str | None = None
    port: int | None = None
    appid: str | None = None
    service_domain: str | None = None

    @property
    def address(self) -> str:
        if self.ip:
            return f"{self.ip}:{self.port}" if self.port else self.ip
        return self.domain or self.endpoint or f"cos.{self.region}.myqcloud.com"

    def cos_config_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``qcloud_cos.CosConfig``, under their FATE (= SDK) names."""
        optional = {
            "Scheme": self.scheme,
            "Endpoint": self.endpoint,
            "Domain": self.domain,
            "IP": self.ip,
            "Port": self.port,
            "Appid": self.appid,
            "ServiceDomain": self.service_domain,
        }
        required = {"Region": self.region, "SecretId": self.secret_id, "SecretKey": self.secret_key}
        return {**required, **{k: v for k, v in optional.items() if v is not None}}

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> CosConfigSettings:
        r = _Reader("tencent_cos", settings, COS_REQUIRED + COS_OPTIONAL)
        return cls(
            region=r.text("Region"),
            secret_id=r.text("SecretId"),
            secret_key=r.text("SecretKey"),
            bucket=r.text("Bucket"),
            scheme=r.optional_text("Scheme"),
            endpoint=r.optional_text("Endpoint"),
            domain=r.optional_text("Domain"),
            ip=r.optional_text("IP"),
            port=r.integer("Port", None, 1),
            appid=r.optional_text("Appid"),
            service_domain=r.optional_text("ServiceDomain"),
        )
