"""The fuzz suite's settings and harness: one federation of real processes per module, a seeded model, counters.

Hypothesis runs derandomized (a fixed seed per test, no example database), so CI sees the same
cases on every run; each test sets its own ``max_examples`` and the run prints how many cases
were tried in all (at least :data:`MIN_TOTAL_CASES`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from client.sdk import RegistryClient
from fate_registry.errors import RegistryError
from fate_registry.identity import validate_name
from fate_registry.v1 import common_pb2 as common
from party_agent.lifecycle import ABORTED_PREFIX
from tests.conftest import GeneratedModel, generate_model
from tests.fuzz.oracles import MODEL_CACHE, STAGING_DIRS, TreeSnapshot, assert_serving, escaped_files
from tests.support.federation import LocalFederation

MIN_TOTAL_CASES = 10_000
# Small archive limits, so that zip bombs hit them in milliseconds.
MAX_ARCHIVE_BYTES = 2 * 1024 * 1024
MAX_ARCHIVE_ENTRIES = 200
settings.register_profile(
    "fuzz",
    derandomize=True,
    database=None,
    deadline=None,  # a case's time is the servers' business here; bench/ measures it
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
FUZZ = settings.get_profile("fuzz")

cases: Counter[tuple[str, str]] = Counter()
"""Cases run, by target and outcome ("ok" or the error's reason): filled by :func:`count`, printed at the end."""


def count(target: str, outcome: str) -> None:
    cases[target, outcome] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not cases:
        return
    targets: dict[str, Counter[str]] = {}
    for (target, outcome), n in cases.items():
        targets.setdefault(target, Counter())[outcome] += n
    terminalreporter.write_line(f"fuzz: {sum(cases.values())} generated cases in all")
    for target, outcomes in sorted(targets.items()):
        detail = ", ".join(f"{outcome} {n}" for outcome, n in outcomes.most_common())
        terminalreporter.write_line(f"  {target}: {sum(outcomes.values())} ({detail})")


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
    """Paths a valid request may create: a party model id's directory in a cache, the marker of an aborted
    two-phase operation (kept for a week by design), a migrated archive."""
    parts = path.split("/")
    if MODEL_CACHE in parts:
        inside = parts[parts.index(MODEL_CACHE) + 1 :]
        if inside[:1] == [STAGING_DIRS[0]] and len(inside) == 2 and inside[1].startswith(ABORTED_PREFIX):
            return _valid_name(inside[1].removeprefix(ABORTED_PREFIX))
        return len(inside) == 1 and inside[0].count("#") >= 2 and not inside[0].startswith(".")
    return "migrated" in parts


def _valid_name(name: str) -> bool:
    try:
        validate_name(name, "name")
    except RegistryError:
        return False
    return True


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    root = tmp_path_factory.mktemp("fuzz")
    limits = {"max_archive_bytes": MAX_ARCHIVE_BYTES, "max_archive_entries": MAX_ARCHIVE_ENTRIES}
    with LocalFederation.start(root / "federation", extra_conf={"limits": limits}) as federation:
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
