"""Prometheus scrapes for the tests: ``/metrics`` read over HTTP into {(name, sorted labels): value}."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.fate_http import send

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(address: str) -> Samples:
    answer = send(address, "GET", "/metrics")
    assert answer.status == 200, answer
    assert answer.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.body.decode())
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 when it has not been counted yet."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def moved_in_all(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """How much every sample of ``name`` whose labels include ``labels`` moved, together."""

    def total(samples: Samples) -> float:
        wanted = set(labels.items())
        return sum(v for (n, have), v in samples.items() if n == name and wanted <= set(have))

    return total(after) - total(before)
