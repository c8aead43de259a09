"""Remote model stores (FATE's ``model_store_address``): one interface, the MySQL, Redis and Tencent COS engines."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, get_args

from fate_registry.config import StorageEngine
from party_agent.storage.base import ModelStore, StoredObject, StoreKey, misconfigured
from party_agent.storage.config import CosConfigSettings, MySQLConfig, RedisConfig
from party_agent.storage.metered import MeteredStore

ENGINES: tuple[str, ...] = get_args(StorageEngine)


def open_store(storage: str, settings: Mapping[str, Any]) -> ModelStore:
    """The engine ``storage`` names, configured from FATE's ``model_store_address`` keys.

    Its calls and bytes are counted (:class:`MeteredStore`).

    A ``storage`` key inside ``settings`` is ignored, so the whole ``model_store_address`` section can
    be passed. Nothing is contacted yet: connection and credential errors come with the first call.
    """
    if storage == "mysql":
        from party_agent.storage.mysql import MySQLModelStore

        return MeteredStore(MySQLModelStore(MySQLConfig.from_settings(settings)))
    if storage == "redis":
        from party_agent.storage.redis_store import RedisModelStore

        return MeteredStore(RedisModelStore(RedisConfig.from_settings(settings)))
    if storage == "tencent_cos":
        from party_agent.storage.cos import CosModelStore

        return MeteredStore(CosModelStore(CosConfigSettings.from_settings(settings)))
    raise misconfigured(storage, f"Model storage {storage!r} is not supported; expected one of {', '.join(ENGINES)}")


__all__ = [
    "ENGINES",
    "CosConfigSettings",
    "ModelStore",
    "MySQLConfig",
    "RedisConfig",
    "StoreKey",
    "StoredObject",
    "open_store",
]
