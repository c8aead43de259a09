"""The ``-c`` confs: the keys ``flow model <command> --help`` names are those :mod:`client.confs` reads, and every
example under ``examples/model/`` is a valid conf of its command (built by the same code ``flow`` runs)."""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from client import confs
from client.cli import CONF_KEYS, build_parser, main
from fate_registry.errors import RegistryError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "model"
BUILDERS: dict[str, Callable[[confs.Conf], object]] = {
    "import": confs.import_spec,
    "restore": confs.restore_request,
    "export": confs.export_spec,
    "store": confs.store_request,
    "load": lambda conf: confs.load_request(conf, ""),
    "bind": lambda conf: confs.bind_request(conf, ""),
    "migrate": confs.migrate_request,
    "homo-convert": confs.homo_convert_request,
    "homo-deploy": confs.homo_deploy_request,
}
JOB_ID = "202006122120163452240"
BUILDERS_WITH_JOB: dict[str, Callable[[confs.Conf], object]] = {"bind": lambda conf: confs.bind_request(conf, JOB_ID)}
# How a missing key is refused where the builder does not say "required parameters are missing: <key>"
OWN_REFUSAL = {("import", "file"): "Please specify the valid model file path"}
# Keys the builder leaves to the registry to refuse (FATE's server refuses an empty service id, not its CLI)
LEFT_TO_THE_REGISTRY = {("bind", "service_id")}


class _Recorder(dict[str, Any]):
    """A conf object that notes every key read from it (dotted from the conf's top), its nested objects too."""

    def __init__(self, data: Mapping[str, Any], seen: set[str], prefix: str = "") -> None:
        super().__init__(
            {k: _Recorder(v, seen, f"{prefix}{k}.") if isinstance(v, dict) else v for k, v in data.items()}
        )
        self._seen, self._prefix = seen, prefix

    def get(self, key: str, default: Any = None) -> Any:
        self._seen.add(self._prefix + key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self._seen.add(self._prefix + key)
        return super().__getitem__(key)


def _example(command: str, directory: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example conf of ``command`` copied into ``directory``, with the files it names made there: an
    import's archive beside the conf (where ``flow`` looks for a relative path), homo-deploy's kubeconfig in
    a home of the test's own. Run from another directory, so the conf's own directory is what counts."""
    path = directory / CONF_KEYS[command].example
    shutil.copy(EXAMPLES / path.name, path)
    data = json.loads(path.read_text(encoding="utf-8"))
    if command == "import":
        (directory / data["file"]).write_bytes(b"PK")
    if command == "homo-deploy":
        monkeypatch.setenv("HOME", str(directory))
        kubeconfig = Path(data["deployment_parameters"]["config_file"]).expanduser()
        kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        kubeconfig.write_text("apiVersion: v1\nkind: Config\n", encoding="utf-8")
    elsewhere = directory / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    monkeypatch.chdir(elsewhere)
    return path


def _dotted(data: Mapping[str, Any], prefix: str = "") -> set[str]:
    """Every key of a conf, nested ones dotted (``job_parameters.model_id``)."""
    keys = set()
    for key, value in data.items():
        keys.add(prefix + key)
        if isinstance(value, dict):
            keys |= _dotted(value, f"{prefix}{key}.")
    return keys


def _under(key: str, names: tuple[str, ...]) -> bool:
    """``key`` is one of ``names`` or inside one of them (``role.guest`` is inside ``role``)."""
    return any(key == name or key.startswith(name + ".") for name in names)


def _without(data: Mapping[str, Any], dotted: str) -> dict[str, Any]:
    head, _, rest = dotted.partition(".")
    if not rest:
        return {k: v for k, v in data.items() if k != head}
    return {**data, head: _without(data[head], rest)}


@pytest.mark.parametrize("command", sorted(CONF_KEYS))
def test_the_example_is_a_valid_conf_built_as_flow_builds_it(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = BUILDERS[command](confs.read_conf(_example(command, tmp_path, monkeypatch)))
    if isinstance(built, confs.ImportSpec):
        assert built.file == tmp_path / json.loads((EXAMPLES / "import_model.json").read_text())["file"]


@pytest.mark.parametrize("command", sorted(CONF_KEYS))
def test_help_names_exactly_the_keys_the_builder_reads(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = CONF_KEYS[command]
    path = _example(command, tmp_path, monkeypatch)
    data = json.loads(path.read_text(encoding="utf-8"))
    seen: set[str] = set()
    BUILDERS[command](confs.Conf(_Recorder(data, seen), path))
    declared = (*keys.required, *keys.without_job, *keys.optional)
    # a key read is declared, or inside one that is (a role map's roles), or holds declared ones (job_parameters)
    unexplained = {k for k in seen if not _under(k, declared) and not any(d.startswith(k + ".") for d in declared)}
    assert not unexplained, f"{command} reads keys its help does not name: {sorted(unexplained)}"
    assert set(declared) <= seen, f"{command}'s help names keys it does not read: {sorted(set(declared) - seen)}"
    assert not [k for k in seen if _under(k, keys.accepted)], "an 'accepted, not needed' key is read"
    strangers = {k for k in _dotted(data) if not _under(k, (*declared, *keys.accepted))}
    strangers -= {k for k in strangers if any(d.startswith(k + ".") for d in declared)}
    assert not strangers, f"the example of {command} holds keys its help does not name: {sorted(strangers)}"


@pytest.mark.parametrize("command", sorted(CONF_KEYS))
def test_every_required_key_is_required(command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = CONF_KEYS[command]
    path = _example(command, tmp_path, monkeypatch)
    data = json.loads(path.read_text(encoding="utf-8"))
    for key in (*keys.required, *keys.without_job):
        conf = confs.Conf(_without(data, key), path)
        if (command, key) in LEFT_TO_THE_REGISTRY:
            BUILDERS[command](conf)
            continue
        with pytest.raises(RegistryError) as refused:
            BUILDERS[command](conf)
        expected = OWN_REFUSAL.get((command, key), key.partition(".")[0])
        assert expected in refused.value.message, (key, refused.value.message)
    if keys.without_job:  # with -j the registry looks the model up: the conf needs none of them
        rest = data
        for head in {key.partition(".")[0] for key in keys.without_job}:
            rest = _without(rest, head)
        BUILDERS_WITH_JOB[command](confs.Conf(rest, path))


def _conf_commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], bool]:
    """Every command of ``flow`` by its words, and whether it takes ``-c``."""
    found: dict[tuple[str, ...], bool] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found |= _conf_commands(sub, (*path, name))
    if path and not found:
        found[path] = any("-c" in action.option_strings for action in parser._actions)
    return found


def test_every_command_taking_a_conf_has_its_keys() -> None:
    taking = {words for words, takes in _conf_commands(build_parser()).items() if takes}
    assert {words[-1] for words in taking if words[0] == "model"} == set(CONF_KEYS) - {"restore", "store"}
    assert all(words[0] == "model" for words in taking if words != ("init",))  # flow init -c: a service conf


@pytest.mark.parametrize(
    ("words", "kinds"),
    [
        (("import",), ("import", "restore")),
        (("export",), ("export", "store")),
        *(((command,), (command,)) for command in ("load", "bind", "migrate", "homo-convert", "homo-deploy")),
    ],
)
def test_help_lists_the_conf_keys(
    words: tuple[str, ...], kinds: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["model", *words, "--help"]) == 0
    shown = " ".join(capsys.readouterr().out.split())  # unwrapped
    for kind in kinds:
        keys = CONF_KEYS[kind]
        assert f"examples/model/{keys.example}" in shown
        for key in (*keys.required, *keys.without_job, *keys.optional, *keys.accepted):
            assert key in shown, (kind, key, shown)
