"""The demo shows every command it runs as a line that can be pasted into a shell: its ``quoted`` helper, taken
from scripts/demo.sh and run by bash, gives back the very words once bash reads its line again."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo.sh"
WORDS = [
    "flow",
    "model",
    "deploy",
    "--cpn-list",
    "reader_0, data_transform_0, intersection_0, hetero_lr_0",  # the one a pasted copy used to break on
    "--model-id",
    "arbiter-10000#guest-9999#host-10000#model",
    "#starts-a-comment",
    "hetero_lr_0:29",
    "/tmp/a dir/import_guest_9999.json",
    "it's",
    "'",
    "",
    "$HOME",
    "`id`",
    "$(id)",
    "*",
    "a\\b",
    'say "hi"',
    "tab\there",
    "new\nline",
    "ünïcode",
    "!x",
    "a;b&c|d>e<f",
    "~",
]
SAFE = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")


def _quoted_function() -> str:
    """The ``quoted`` function as demo.sh defines it."""
    text = DEMO.read_text(encoding="utf-8")
    match = re.search(r"^quoted\(\) \{.*?^\}$", text, re.MULTILINE | re.DOTALL)
    assert match, "scripts/demo.sh defines quoted()"
    return match.group(0)


def _bash(script: str, *args: str) -> str:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    done = subprocess.run([bash, "-c", script, "bash", *args], capture_output=True, text=True, timeout=30, check=True)
    return done.stdout


def test_a_quoted_line_reads_back_as_the_same_words() -> None:
    line = _bash(_quoted_function() + '\nquoted "$@"', *WORDS).removesuffix("\n")
    read_back = _bash(f"printf '%s\\0' {line}")
    assert read_back.split("\0")[:-1] == WORDS
    # a word that needs nothing is shown as it is (the line stays readable)
    assert "--cpn-list" in line.split() and "hetero_lr_0:29" in line.split()
    assert all(SAFE.fullmatch(word) or f" {word} " not in f" {line} " for word in WORDS)


def test_every_command_the_demo_shows_goes_through_quoted() -> None:
    text = DEMO.read_text(encoding="utf-8")
    shown = [line for line in text.splitlines() if re.search(r'echo "\\\$ ', line)]
    assert shown, "the demo echoes its commands"
    assert all("$(quoted " in line for line in shown), shown
    assert "$*" not in text and "[*]}" not in text.replace('"${out[*]}"', "")
