"""The engine settings of ``model_store_address``, one schema per engine, with FATE's keys exactly.

Secrets (passwords, SecretKey) are :class:`~pydantic.SecretStr`, so they never reach a repr, a log line
or an error; an unknown key is refused with the nearest valid one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from pydantic import BeforeValidator, Field, SecretStr, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass as section

from fate_registry.schema import SECTION, Secret, Section, Text, conf_error, explain
from party_agent.storage.base import misconfigured


def _required(value: Any) -> Any:
    if value is None or value == "":
        raise conf_error("is required")
    return value


def _optional(value: Any) -> Any:
    return None if value is None or value == "" else value


def _whole_number(value: Any) -> Any:
    """An integer, or its digits as a string (FATE's confs hold both)."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise conf_error("must be an integer")
    return value


Required = Annotated[Text, BeforeValidator(_required)]
OptionalText = Annotated[Text | None, BeforeValidator(_optional)]
Port = Annotated[int, BeforeValidator(_whole_number), Field(ge=1)]
OptionalWhole = Annotated[int | None, BeforeValidator(lambda v: _optional(v) and _whole_number(v)), Field(ge=1)]
"""A positive whole number (seconds, a port), or unset."""


@section(frozen=True, config=SECTION)
class MySQLConfig(Section):
    """``storage: mysql``. ``max_connections`` and ``stale_timeout`` mean what they mean to peewee's pool."""

    database: Required
    user: Required
    host: Required
    password: Secret = SecretStr("")
    port: Port = 3306
    max_connections: Port = 8
    stale_timeout: OptionalWhole = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> MySQLConfig:
        return _read(cls, "mysql", settings)


@section(frozen=True, config=SECTION)
class RedisConfig(Section):
    """``storage: redis``. ``ex`` is the expiry in seconds of every stored key; None keeps them forever."""

    host: Required
    port: Port = 6379
    db: Annotated[int, BeforeValidator(_whole_number), Field(ge=0)] = 0
    password: Annotated[Secret | None, BeforeValidator(_optional)] = None
    ex: OptionalWhole = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}/{self.db}"

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> RedisConfig:
        return _read(cls, "redis", settings)


@section(frozen=True, config=SECTION)
class CosConfigSettings(Section):
    """``storage: tencent_cos``. Every key but ``Bucket`` goes to the SDK's ``CosConfig`` unchanged."""

    region: Required = Field(alias="Region")
    secret_id: Required = Field(alias="SecretId")
    secret_key: Annotated[Secret, BeforeValidator(_required)] = Field(alias="SecretKey")
    bucket: Required = Field(alias="Bucket")
    scheme: OptionalText = Field(None, alias="Scheme")
    endpoint: OptionalText = Field(None, alias="Endpoint")
    domain: OptionalText = Field(None, alias="Domain")
    ip: OptionalText = Field(None, alias="IP")
    port: OptionalWhole = Field(None, alias="Port")
    appid: OptionalText = Field(None, alias="Appid")
    service_domain: OptionalText = Field(None, alias="ServiceDomain")

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
        required = {"Region": self.region, "SecretId": self.secret_id, "SecretKey": self.secret_key.get_secret_value()}
        return {**required, **{k: v for k, v in optional.items() if v is not None}}

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> CosConfigSettings:
        return _read(cls, "tencent_cos", settings)


Engine = TypeVar("Engine", MySQLConfig, RedisConfig, CosConfigSettings)


def _read(schema: type[Engine], engine: str, settings: Mapping[str, Any]) -> Engine:
    """``settings`` (a ``storage`` key is ignored) as ``schema``, or an error naming the key, never its value."""
    try:
        return TypeAdapter(schema).validate_python({k: v for k, v in settings.items() if k != "storage"})
    except ValidationError as exc:
        key, problem = explain(exc)
        raise misconfigured(engine, f"{key} {problem}" if problem == "is required" else f"{key}: {problem}") from None
