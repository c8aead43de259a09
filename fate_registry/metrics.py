"""The registry's Prometheus metrics (``prometheus_client``), every one defined here, each counted at one place.

* RPCs by service, method and status code, with latency: ``MetricsInterceptor``, the outermost
  interceptor of every gRPC server (:func:`fate_registry.grpc_server.bind_server`); it also counts the bytes
  of archive streams (the raw-bytes ImportModel and ExportModel) by direction.
* Operations by kind and outcome with their duration: the catalog, as it finishes an operation.
* Per-party call latency and failures: the coordinator's calls to the agents.
* Archives refused by reason: where an ImportModel's refusal becomes its status.
* Model-store calls and bytes by engine (:class:`party_agent.storage.metered.MeteredStore`), FATE-Serving calls
  by outcome (``party_agent.serving.call_servings``).
* Catalog size and agent disk free: read when scraped (:func:`watch_catalog`, :func:`watch_disk`).

Exposed as ``/metrics`` on the coordinator's HTTP address and on each agent's transfer endpoint
(:func:`exposition`). Labels never carry a model id or a secret: their values are bounded sets.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    from fate_registry.errors import RegistryError

PREFIX = "fate_registry"
CONTENT_TYPE = CONTENT_TYPE_LATEST
ARCHIVE_METHODS = frozenset({"ImportModel", "RestoreModel"})
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

RPCS = Counter(f"{PREFIX}_rpcs", "gRPC calls served, by service, method and status code", ["service", "method", "code"])
RPC_SECONDS = Histogram(
    f"{PREFIX}_rpc_seconds", "gRPC call latency, by service and method", ["service", "method"], buckets=LATENCY_BUCKETS
)
OPERATIONS = Counter(f"{PREFIX}_operations", "operations finished, by kind and outcome", ["kind", "outcome"])
OPERATION_SECONDS = Histogram(
    f"{PREFIX}_operation_seconds", "operation duration, by kind", ["kind"], buckets=LATENCY_BUCKETS
)
PARTY_CALLS = Counter(
    f"{PREFIX}_party_calls", "coordinator calls to agents, by party and outcome", ["party_id", "outcome"]
)
PARTY_CALL_SECONDS = Histogram(
    f"{PREFIX}_party_call_seconds",
    "coordinator call latency to agents, by party",
    ["party_id"],
    buckets=LATENCY_BUCKETS,
)
STREAMED_BYTES = Counter(f"{PREFIX}_streamed_bytes", "archive and model bytes streamed, by direction", ["direction"])
ARCHIVES_REFUSED = Counter(f"{PREFIX}_archives_refused", "archives refused, by reason", ["reason"])
STORE_CALLS = Counter(
    f"{PREFIX}_store_calls", "model-store calls, by engine, call and outcome", ["engine", "call", "outcome"]
)
STORE_BYTES = Counter(f"{PREFIX}_store_bytes", "model-store bytes, by engine and direction", ["engine", "direction"])
SERVING_CALLS = Counter(f"{PREFIX}_serving_calls", "FATE-Serving publish calls of a party, by outcome", ["outcome"])
CATALOG_VERSIONS = Gauge(f"{PREFIX}_catalog_versions", "model versions in the coordinator's catalog")
DISK_FREE_BYTES = Gauge(f"{PREFIX}_disk_free_bytes", "bytes free on the disk of the agent's model cache")


def exposition() -> tuple[bytes, str]:
    """The scrape's body and its Content-Type."""
    return generate_latest(), CONTENT_TYPE


def observe_operation(kind: str, outcome: str, seconds: float) -> None:
    OPERATIONS.labels(kind, outcome).inc()
    OPERATION_SECONDS.labels(kind).observe(seconds)


@contextmanager
def party_call(party_id: str) -> Iterator[None]:
    """Time one call to ``party_id``'s agent; an exception counts as its failure."""
    start = time.perf_counter()
    outcome = "failure"
    try:
        yield
        outcome = "success"
    finally:
        PARTY_CALLS.labels(party_id, outcome).inc()
        PARTY_CALL_SECONDS.labels(party_id).observe(time.perf_counter() - start)


@contextmanager
def store_call(engine: str, call: str) -> Iterator[None]:
    """One call of a model store; an exception counts as its failure."""
    outcome = "failure"
    try:
        yield
        outcome = "success"
    finally:
        STORE_CALLS.labels(engine, call, outcome).inc()


def store_bytes(chunks: Iterable[bytes], engine: str, direction: str) -> Iterator[bytes]:
    counter = STORE_BYTES.labels(engine, direction)
    for chunk in chunks:
        counter.inc(len(chunk))
        yield chunk


def count_refusal(method: str, error: RegistryError) -> None:
    """An archive the registry refused (an import or a restore that failed), by the error's reason."""
    if method in ARCHIVE_METHODS:
        ARCHIVES_REFUSED.labels(error.reason.name.lower()).inc()


def watch_catalog(count_versions: Callable[[], int]) -> None:
    """The catalog's size, counted when scraped."""
    CATALOG_VERSIONS.set_function(count_versions)


def watch_disk(directory: Path) -> None:
    """The free bytes of ``directory``'s disk, read when scraped."""
    DISK_FREE_BYTES.set_function(lambda: shutil.disk_usage(directory).free if directory.exists() else 0)


def counted(items: Iterator[Any], direction: str) -> Iterator[Any]:
    """Raw archive messages (bytes) as they pass, their length added to the bytes streamed."""
    counter = STREAMED_BYTES.labels(direction)
    for item in items:
        if isinstance(item, bytes):
            counter.inc(len(item))
        yield item


class RpcMeters:
    """The latency histogram and status counters of each method, looked up once (a hot call pays a dict get)."""

    def __init__(self) -> None:
        self._timers: dict[str, Any] = {}
        self._counters: dict[tuple[str, str], Any] = {}

    def timer(self, name: str) -> Any:
        """``name``: the method's full name, ``/package.Service/Method``."""
        timer = self._timers.get(name)
        if timer is None:
            timer = self._timers[name] = RPC_SECONDS.labels(*_split(name))
        return timer

    def count(self, name: str, code: str) -> None:
        counter = self._counters.get((name, code))
        if counter is None:
            counter = self._counters[(name, code)] = RPCS.labels(*_split(name), code)
        counter.inc()


def _split(name: str) -> tuple[str, str]:
    service, _, method = name.lstrip("/").rpartition("/")
    return service, method
