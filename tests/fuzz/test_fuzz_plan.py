"""The fuzz suite's size: at least :data:`MIN_TOTAL_CASES` generated cases per run, as the issue asks.

Each fuzz test runs exactly its ``max_examples`` (derandomized, its strategies never exhaust), so the
plan below is what a full run does; the run also prints the count it made (``fuzz: N generated cases``).
"""

from __future__ import annotations

from tests.fuzz import test_archive_fuzz, test_cli_fuzz, test_rpc_fuzz
from tests.fuzz.conftest import MIN_TOTAL_CASES


def planned_cases() -> dict[str, int]:
    rpc, cli, archive = test_rpc_fuzz, test_cli_fuzz, test_archive_fuzz
    return {
        "coordinator unary RPCs": len(rpc.unary_methods(rpc.REGISTRY)) * rpc.CASES_PER_RPC,
        "agent unary RPCs": len(rpc.unary_methods(rpc.AGENT)) * rpc.CASES_PER_AGENT_RPC,
        "archive streams, coordinator and agent": 2 * 2 * rpc.CASES_PER_RPC,
        "flow confs": len(cli.CONF_COMMANDS) * cli.CASES_PER_CONF,
        "flow options": cli.CASES_OF_OPTIONS,
        "flow processes": cli.CASES_REAL_FLOW,
        "malformed archives, relayed and direct": 2 * archive.CASES_PER_MODE,
    }


def test_a_run_makes_at_least_the_minimum_of_cases() -> None:
    plan = planned_cases()
    assert sum(plan.values()) >= MIN_TOTAL_CASES, plan
