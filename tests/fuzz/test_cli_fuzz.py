"""Every conf of ``flow model …`` and the option strings of ``flow model …`` / ``flow checkpoint …``, fuzzed.

Confs hold wrong JSON types, missing and extra keys, huge strings, unicode and path tricks, or are
not a JSON object at all. Most cases run the CLI in this process (``client.cli.main``: conf parsing,
the SDK and a real gRPC call to a federation of real processes, without a Python start-up per case);
a sample runs the real ``flow`` command. Oracles: exit status 0 or 1 with one JSON answer (or
argparse's usage error, 2, for options it refuses), never an unforeseen exception, a traceback or a
Python repr; the servers keep serving; no file appears outside the model cache.

Paths the CLI writes to (export's ``output_path``, get-predict's ``-o``) are kept under the case's
working directory: the CLI writes where its user asks, which is the user's business, not a leak.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client import cli
from tests.flow_cli import FLOW
from tests.fuzz.conftest import FUZZ, Fuzzed, count
from tests.fuzz.oracles import check_text
from tests.fuzz.strategies import nasty_text

CASES_PER_CONF = 150
CASES_OF_OPTIONS = 600
CASES_REAL_FLOW = 20
UNEXPECTED = "flow failed with an unexpected"
MODEL_KEYS = ("role", "party_id", "model_id", "model_version")
FEDERATION_KEYS = ("initiator", "role", "job_parameters")
PUBLISH_KEYS = ("model_id", "model_version", "load_type", "file_path", "use_transfer_url_on_serving")
# (flow arguments, top-level keys, keys of nested objects) of every command that reads a -c conf
CONF_COMMANDS: Mapping[str, tuple[tuple[str, ...], tuple[str, ...], Mapping[str, tuple[str, ...]]]] = {
    "import": (("model", "import"), (*MODEL_KEYS, "file", "force_update", "sha256"), {}),
    "restore": (("model", "import", "--from-database"), (*MODEL_KEYS, "force_update", "sha256"), {}),
    "export": (("model", "export"), (*MODEL_KEYS, "output_path"), {}),
    "store": (("model", "export", "--to-database"), (*MODEL_KEYS, "force_update"), {}),
    "load": (("model", "load"), FEDERATION_KEYS, {"job_parameters": PUBLISH_KEYS, "initiator": ("role", "party_id")}),
    "bind": (
        ("model", "bind"),
        (*FEDERATION_KEYS, "service_id", "servings"),
        {"job_parameters": PUBLISH_KEYS, "initiator": ("role", "party_id")},
    ),
    "migrate": (
        ("model", "migrate"),
        ("migrate_initiator", "role", "migrate_role", "model_id", "model_version", "execute_party",
         "unify_model_version", "job_parameters"),
        {"migrate_initiator": ("role", "party_id")},
    ),
    "homo-convert": (("model", "homo-convert"), (*MODEL_KEYS, "framework_name"), {}),
    "homo-deploy": (
        ("model", "homo-deploy"),
        (*MODEL_KEYS, "service_id", "component_name", "deployment_type", "deployment_parameters"),
        {"deployment_parameters": ("config_file", "namespace", "replace")},
    ),
}  # fmt: skip
ROLE_MAP_KEYS = ("role", "migrate_role", "execute_party")
WRITES_TO = ("output_path",)


def json_values(text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    """Any JSON value: hostile strings, big and negative numbers, booleans, null, lists, objects."""
    scalars = st.one_of(
        text,
        st.integers(min_value=-(2**70), max_value=2**70),
        st.sampled_from([0, 1, -1, 9999, 10000]),
        st.booleans(),
        st.none(),
        st.floats(allow_nan=False, allow_infinity=False),
    )
    return st.recursive(
        scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3), max_leaves=6
    )


def role_maps(ids: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """FATE's role map ``{"guest": [9999], ...}``, with hostile roles and ids."""
    roles = st.sampled_from(["guest", "host", "arbiter", "local", "", "../x", "a" * 300])
    return st.dictionaries(roles, st.lists(ids, max_size=3), max_size=3)


@st.composite
def confs(draw: st.DrawFn, keys: Sequence[str], nested: Mapping[str, Sequence[str]], known: Sequence[str]) -> Any:
    """A conf for one command: its own keys (some left out), each with a value of the right type or not."""
    text = nasty_text(known)
    values = json_values(text)
    party_ids = st.one_of(st.sampled_from([9999, 10000, "9999", "10000"]), values)
    conf: dict[str, Any] = {}
    for key in keys:
        if draw(st.integers(0, 5)) == 0:
            continue  # a missing key
        if key in nested:
            inner = {k: draw(party_ids if k == "party_id" else values) for k in nested[key] if draw(st.booleans())}
            conf[key] = draw(st.one_of(st.just(inner), values))
        elif key in ROLE_MAP_KEYS:
            conf[key] = draw(st.one_of(role_maps(party_ids), values))
        elif key == "party_id":
            conf[key] = draw(party_ids)
        elif key in WRITES_TO:
            conf[key] = "out/" + draw(st.text(max_size=20).filter(lambda s: "\x00" not in s))
        else:
            conf[key] = draw(st.one_of(text, values))
    conf.update(draw(st.dictionaries(text, values, max_size=2)))  # extra keys
    return draw(st.one_of(st.just(conf), st.just(conf), values))  # sometimes not an object at all


def conf_files(conf: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """The conf file's bytes: the JSON of a conf, or something that is not JSON, or not UTF-8."""
    return st.one_of(
        conf.map(lambda c: json.dumps(c).encode()),
        conf.map(lambda c: json.dumps(c, ensure_ascii=False).encode()),
        st.sampled_from([b"", b"{", b'{"role": }', b"\xff\xfe{}", b"\x00", b"[1, 2", b"null"]),
        st.binary(max_size=64),
    )


@contextlib.contextmanager
def _in(directory: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(before)


def run_in_process(fuzzed: Fuzzed, argv: Sequence[str]) -> tuple[int, str]:
    """``flow ARGV`` in this process: its exit status and what it printed on stdout."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["--address", fuzzed.federation.address, *argv])
    check_text(err.getvalue(), "flow's stderr")
    return code, out.getvalue()


def check_answer(code: int, out: str, what: str) -> str:
    """Exit 0 or 1 with one clean JSON answer (FATE's envelope), or argparse's usage error; its outcome."""
    if code == 2:
        assert not out, f"{what}: a usage error printed an answer: {out[:300]!r}"
        return "usage"
    assert code in (0, 1), f"{what}: exit status {code}"
    answer = json.loads(out)
    assert isinstance(answer, dict) and isinstance(answer.get("retcode"), int), f"{what}: {out[:300]!r}"
    assert isinstance(answer.get("retmsg"), str) and answer["retmsg"], f"{what}: no retmsg: {out[:300]!r}"
    assert UNEXPECTED not in answer["retmsg"], f"{what}: {answer['retmsg']}"
    assert (code == 0) == (answer["retcode"] == 0), f"{what}: exit {code} with retcode {answer['retcode']}"
    check_text(out, what)
    return str(answer["retcode"])


@pytest.fixture(autouse=True)
def one_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    """``flow``'s parser built once for all cases: building it costs more than most cases' calls."""
    monkeypatch.setattr(cli, "build_parser", functools.cache(cli.build_parser))


@pytest.fixture
def workdir(fuzzed: Fuzzed, tmp_path: Path) -> Path:
    """A working directory holding a real archive (``archive.zip``), so some imports get that far."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(next(iter(fuzzed.model.archives.values())), work / "archive.zip")
    return work


@pytest.mark.parametrize("command", sorted(CONF_COMMANDS))
def test_conf(fuzzed: Fuzzed, workdir: Path, command: str) -> None:
    args, keys, nested = CONF_COMMANDS[command]
    known = [*fuzzed.known, "archive.zip", str(workdir / "archive.zip")]

    @settings(FUZZ, max_examples=CASES_PER_CONF)
    @given(data=conf_files(confs(keys, nested, known)))
    def case(data: bytes) -> None:
        conf = workdir / "conf.json"
        conf.write_bytes(data)
        with _in(workdir):
            code, out = run_in_process(fuzzed, [*args, "-c", str(conf)])
        count(f"cli:{command}", check_answer(code, out, f"flow {' '.join(args)}"))

    case()
    fuzzed.check_after()


def _option_value(text: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """An option's value: argv cannot carry NUL, and a leading '-' would make argparse read an option."""
    return text.map(lambda s: s.replace("\x00", "")).filter(lambda s: not s.startswith("-"))


@st.composite
def option_commands(draw: st.DrawFn, known: Sequence[str]) -> list[str]:
    """The commands configured by options alone, each with hostile values."""
    value = _option_value(nasty_text(known))
    model = ["--model-id", draw(value), "--model-version", draw(value)]
    party = ["-r", draw(st.sampled_from(["guest", "host", "arbiter", "local"])), "-p", draw(value)]
    big = st.integers(-(2**70), 2**70)
    steps = st.lists(st.builds(lambda c, s: f"{c}:{s}", value, st.one_of(value, big.map(str))), max_size=2)
    choices = [
        ["model", "deploy", *model, "--cpn-list", draw(value)],
        ["model", "deploy", *model, *[a for s in draw(steps) for a in ("--cpn-step-index", s)]],
        ["model", "deploy", *model, *[a for s in draw(steps) for a in ("--cpn-step-name", s)]],
        ["model", "tag-model", "-j", draw(value), "-t", draw(value), *draw(st.sampled_from([[], ["--remove"]]))],
        ["model", "tag-list", "-j", draw(value)],
        ["model", "get-model-info", *model, *party, *draw(st.sampled_from([[], ["--detail"]]))],
        ["model", "get-predict-dsl", *model, "-o", "out/" + draw(value)],
        ["model", "get-predict-conf", *model, "-o", "out/" + draw(value)],
        ["model", "load", "-j", draw(value)],
        ["model", "unload", *model],
        ["model", "unbind", *model, "--service-id", draw(value)],
        ["model", "delete", *model, *party],
        ["model", "list-versions", "--model-id", draw(value), "--page-token", draw(value),
         "--page-size", str(draw(big))],
        ["checkpoint", "list", *model, *party, "-cpn", draw(value)],
        ["checkpoint", "get", *model, *party, "-cpn", draw(value), "--step-name", draw(value)],
        ["checkpoint", "get", *model, *party, "-cpn", draw(value), "--step-index", str(draw(big))],
        ["operation", "list", "--model-id", draw(value), "--operation", draw(value), "--page-token", draw(value)],
    ]  # fmt: skip
    return draw(st.sampled_from(choices))


def test_options(fuzzed: Fuzzed, tmp_path: Path) -> None:
    @settings(FUZZ, max_examples=CASES_OF_OPTIONS)
    @given(argv=option_commands(fuzzed.known))
    def case(argv: list[str]) -> None:
        with _in(tmp_path):
            code, out = run_in_process(fuzzed, argv)
        count(f"cli:{argv[0]} {argv[1]}", check_answer(code, out, f"flow {argv[0]} {argv[1]}"))

    case()
    fuzzed.check_after()


def test_real_flow_command(fuzzed: Fuzzed, workdir: Path) -> None:
    """A sample through the real ``flow`` program: a process of its own, as a user runs it."""
    commands = sorted(CONF_COMMANDS)

    @settings(FUZZ, max_examples=CASES_REAL_FLOW)
    @given(
        command=st.sampled_from(commands),
        data=st.data(),
    )
    def case(command: str, data: st.DataObject) -> None:
        args, keys, nested = CONF_COMMANDS[command]
        conf = workdir / "conf.json"
        conf.write_bytes(data.draw(conf_files(confs(keys, nested, [*fuzzed.known, "archive.zip"]))))
        done = subprocess.run(
            [FLOW, "--address", fuzzed.federation.address, *args, "-c", str(conf)],
            capture_output=True,
            text=True,
            cwd=workdir,
            timeout=120,
            check=False,
        )
        check_text(done.stderr, "flow's stderr")
        count("flow (process)", check_answer(done.returncode, done.stdout, f"flow {' '.join(args)}"))

    case()
    fuzzed.check_after()
