"""The fuzz suite's settings and harness: one federation of real processes per module, a seeded model, counters.

Hypothesis runs derandomized (a fixed seed per test, no example database), so CI sees the same
cases on every run; each test sets its own ``max_examples`` and the run prints how many cases
were tried in all (the issue asks for at least :data:`MIN_TOTAL_CASES`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from client.sdk import RegistryClient
from fate_registry.testing.federation import LocalFederation
from fate_registry.v1 import common_pb2 as common
from tests.conftest import GeneratedModel, generate_model
from tests.fuzz.oracles import TreeSnapshot, assert_serving, escaped_files

MIN_TOTAL_CASES = 10_000
settings.register_profile(
    "fuzz",
    derandomize=True,
    database=None,
    deadline=None,  # a case's time is the servers' business here; bench/ measures it
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
FUZZ = settings.get_profile("fuzz")

cases: Counter[str] = Counter()
"""Cases run, by test: filled by :func:`count`, printed at the end of the session."""


def count(test: str) -> None:
    cases[test] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if cases:
        total = sum(cases.values())
        lines = ", ".join(f"{name} {n}" for name, n in sorted(cases.items()))
        terminalreporter.write_line(f"fuzz: {total} generated cases ({lines})")


@dataclass
class Fuzzed:
    """A running federation with a model imported on every party, and what the oracles compare against."""

    federation: LocalFederation
    model: GeneratedModel
    client: RegistryClient
    before: TreeSnapshot
    trees: tuple[Path, ...]

    @property
    def addresses(self) -> list[str]:
        return [self.federation.address, *(self.federation.agent_address(p) for p in self.federation.parties)]

    @property
    def known(self) -> list[str]:
        """Values that name real things, so some cases pass validation and reach the parties."""
        spec = self.model.spec
        return [
            spec.model_id,
            spec.version,
            "guest",
            "host",
            "arbiter",
            "local",
            "9999",
            "10000",
            "10001",
            "hetero_lr_0",
            "data_transform_0",
            "pipeline",
            "1",
            "2",
            "tag_a",
            "FATEFLOW",
        ]

    def check_after(self) -> None:
        """Servers up and answering, and no file appeared outside the model cache."""
        assert_serving(*self.addresses)
        after = TreeSnapshot.take(self.federation.root)
        new = {path for path in after.new_since(self.before) if not _expected_new(path)}
        assert not new, f"files appeared outside the model cache: {sorted(new)[:20]}"
        escaped = escaped_files(self.trees, (Path("/tmp"), Path.cwd(), Path.home()))
        assert not escaped, f"files escaped: {escaped[:20]}"


def _expected_new(path: str) -> bool:
    """Paths a valid request may create: a party model id's directory in a cache, a migrated archive."""
    parts = path.split("/")
    if "model_local_cache" in parts:
        inside = parts[parts.index("model_local_cache") + 1 :]
        return len(inside) == 1 and inside[0].count("#") >= 2 and not inside[0].startswith(".")
    return "migrated" in parts


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    root = tmp_path_factory.mktemp("fuzz")
    with LocalFederation.start(root / "federation") as federation:
        model = generate_model(root / "model", checkpoints=2)
        with RegistryClient(federation.address, timeout=30.0) as client:
            for (role, party), archive in model.archives.items():
                target = common.PartyModelRef(
                    role=role, party_id=party, model_id=model.model_id, model_version=model.version
                )
                client.import_model(archive, target)
            before = TreeSnapshot.take(federation.root)
            fuzz = Fuzzed(federation, model, client, before, (tmp_path_factory.getbasetemp(),))
            yield fuzz
            fuzz.check_after()
