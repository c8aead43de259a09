"""The example confs of ``examples/model/`` run as they are through `flow`, on real processes: a coordinator, agents
for guest 9999 and host/arbiter 10000, a FATE-Serving test server per party and a Redis model store. Only the
version the test's generated model has (and the child version its deploy answers) replaces the examples'.

Also: `flow model list-versions` without ``--model-id`` lists every model, paged; `flow model export` on a
terminal draws a bar with the archive's total, percentage and ETA."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import struct
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from client.cli import CONF_KEYS
from fate_registry.identity import gen_model_id
from tests.conftest import GeneratedModel, generate_model
from tests.flow_cli import FLOW, WAIT, flow
from tests.support import services
from tests.support.federation import LocalFederation
from tests.support.serving_process import ServingTestServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "model"
EXAMPLE_VERSION = "202006122116502527621"  # the trained version the examples name
EXAMPLE_CHILD = "202006122120163452240"  # the deployed (child) version load and bind name
CPN_LIST = "reader_0, data_transform_0, intersection_0, hetero_lr_0"


@pytest.fixture(scope="module")
def federation(
    tmp_path_factory: pytest.TempPathFactory, servings: dict[str, ServingTestServer]
) -> Iterator[LocalFederation]:
    root = tmp_path_factory.mktemp("federation")
    with services.redis_server(root / "redis") as redis:
        parties = {party: {"servings": [server.address]} for party, server in servings.items()}
        store = {"model_store_address": {"storage": "redis", **redis.settings()}}
        with LocalFederation.start(root / "fed", parties=parties, extra_conf=store) as fed:
            yield fed


def _example(kind: str, directory: Path, versions: dict[str, str], **keys: Any) -> str:
    """The example conf of ``kind`` written into ``directory``, the examples' versions replaced by
    ``versions`` and top-level ``keys`` set; its path."""
    name = CONF_KEYS[kind].example
    text = (EXAMPLES / name).read_text(encoding="utf-8")
    for placeholder, version in versions.items():
        text = text.replace(placeholder, version)
    path = directory / name
    path.write_text(json.dumps({**json.loads(text), **keys}, indent=2), encoding="utf-8")
    return str(path)


def _ok(result: tuple[int, dict[str, Any]]) -> dict[str, Any]:
    code, answer = result
    assert code == 0 and answer["retcode"] == 0, answer
    return answer


def test_the_examples_run_import_export_store_restore_deploy_load_bind_migrate(
    federation: LocalFederation, servings: dict[str, ServingTestServer], tmp_path: Path
) -> None:
    fed = federation
    model = generate_model(tmp_path)
    versions = {EXAMPLE_VERSION: model.version}
    example_ids = json.loads((EXAMPLES / "import_model.json").read_text(encoding="utf-8"))
    assert example_ids["model_id"] == model.model_id  # the demo's (and the generated model's) model id
    archives = model.archives["guest", "9999"].parent

    # import: the guest's example as it is, beside its archive (a relative "file" is looked up there too);
    # the other parties' slices with their role and party id
    _ok(flow(fed, "model", "import", "-c", _example("import", archives, versions)))
    for role, party in (("host", "10000"), ("arbiter", "10000")):
        file = model.archives[role, party].name
        conf = _example("import", tmp_path, versions, role=role, party_id=int(party), file=str(archives / file))
        _ok(flow(fed, "model", "import", "-c", conf))

    out = tmp_path / "out"
    exported = _ok(flow(fed, "model", "export", "-c", _example("export", tmp_path, versions, output_path=str(out))))
    assert exported["file"] == str(out / model.archives["guest", "9999"].name)
    assert Path(exported["file"]).stat().st_size == exported["data"]["size"]

    stored = _ok(flow(fed, "model", "export", "-c", _example("store", tmp_path, versions), "--to-database"))
    assert len(stored["data"]["sha256"]) == 64
    guest_dir = fed.model_cache("9999") / f"guest#9999#{model.model_id}" / model.version
    delete = ("--model-id", model.model_id, "--model-version", model.version, "-r", "guest", "-p", "9999")
    _ok(flow(fed, "model", "delete", *delete))
    assert not guest_dir.exists()
    restored = _ok(flow(fed, "model", "import", "-c", _example("restore", tmp_path, versions), "--from-database"))
    assert restored["data"]["sha256"] == stored["data"]["sha256"] and guest_dir.is_dir()

    deployed = _ok(
        flow(
            fed,
            "model",
            "deploy",
            "--model-id",
            model.model_id,
            "--model-version",
            model.version,
            "--cpn-list",
            CPN_LIST,
        )
    )
    child = deployed["data"]["model_version"]
    with_child = {**versions, EXAMPLE_CHILD: child}

    loaded = _ok(flow(fed, "model", "load", "-c", _example("load", tmp_path, with_child)))
    assert loaded["data"]["guest"] == {"9999": 0} and loaded["data"]["host"] == {"10000": 0}
    assert servings["9999"].records("publishLoad")[-1]["request"]["model"]["guest"]["roleModelInfo"]["9999"] == {
        "tableName": child,
        "namespace": f"guest#9999#{model.model_id}",
    }
    bound = _ok(flow(fed, "model", "bind", "-c", _example("bind", tmp_path, with_child)))
    service_id = json.loads((EXAMPLES / "bind_model_service.json").read_text(encoding="utf-8"))["service_id"]
    assert bound["retmsg"] == f"service id is {service_id}"
    assert servings["9999"].records("publishBind")[-1]["request"]["serviceId"] == service_id

    migrated = _ok(flow(fed, "model", "migrate", "-c", _example("migrate", tmp_path, versions)))
    assert migrated["data"]["model_id"] == gen_model_id({"guest": [99], "host": [100], "arbiter": [100]})
    assert migrated["data"]["guest"] == {"9999": 0} and migrated["data"]["host"] == {"10000": 0}


def _import_all(fed: LocalFederation, model: GeneratedModel, directory: Path) -> None:
    for (role, party), archive in model.archives.items():
        conf = {
            "role": role,
            "party_id": int(party),
            "model_id": model.model_id,
            "model_version": model.version,
            "file": str(archive),
        }
        path = directory / f"import-{role}-{party}.json"
        path.write_text(json.dumps(conf), encoding="utf-8")
        _ok(flow(fed, "model", "import", "-c", str(path)))


def test_list_versions_without_a_model_id_lists_every_model_paged(federation: LocalFederation, tmp_path: Path) -> None:
    first = generate_model(tmp_path / "first")
    second = generate_model(tmp_path / "second", roles={"guest": [9999], "host": [10000]})
    assert first.model_id != second.model_id
    for model in (first, second):
        _import_all(federation, model, tmp_path)
    wanted = {(first.model_id, first.version), (second.model_id, second.version)}

    listed = _ok(flow(federation, "model", "list-versions"))
    assert wanted <= {(row["model_id"], row["model_version"]) for row in listed["data"]}, listed
    row = next(r for r in listed["data"] if r["model_id"] == second.model_id)
    assert row["roles"] == {"guest": ["9999"], "host": ["10000"]}

    paged: list[tuple[str, str]] = []
    token = ""
    for _ in range(100):  # bounded: a page per version
        page = _ok(flow(federation, "model", "list-versions", "--page-size", "1", "--page-token", token))
        assert len(page["data"]) <= 1
        paged += [(r["model_id"], r["model_version"]) for r in page["data"]]
        token = page.get("meta", {}).get("next_page_token", "")
        if not token:
            break
    assert wanted <= set(paged) and len(paged) == len(set(paged)) == len(listed["data"])

    only = _ok(flow(federation, "model", "list-versions", "--model-id", second.model_id))
    assert {r["model_id"] for r in only["data"]} == {second.model_id}


def _run_on_a_terminal(fed: LocalFederation, *args: str) -> tuple[int, str, str]:
    """`flow ARGS` with stderr on a pseudo-terminal (stdout piped): exit code, stdout, what the terminal showed."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a new one is 0 columns wide
    with subprocess.Popen(
        [FLOW, *args],
        stdout=subprocess.PIPE,
        stderr=slave,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "FATE_REGISTRY_ADDRESS": fed.address},
    ) as process:
        os.close(slave)
        shown = bytearray()
        deadline = time.monotonic() + WAIT
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
                if not ready:
                    break
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: flow ended and closed the terminal
                    break
                if not data:
                    break
                shown += data
        finally:
            os.close(master)
        out = process.stdout.read().decode() if process.stdout else ""
        code = process.wait(timeout=WAIT)
    return code, out, shown.decode("utf-8", "replace")


def test_export_on_a_terminal_shows_total_percentage_and_eta(federation: LocalFederation, tmp_path: Path) -> None:
    model = generate_model(tmp_path, target_bytes=4 * 1024 * 1024)
    _import_all(federation, model, tmp_path)
    conf = tmp_path / "export.json"
    keys = {"role": "guest", "party_id": 9999, "model_id": model.model_id, "model_version": model.version}
    conf.write_text(json.dumps({**keys, "output_path": str(tmp_path / "out")}), encoding="utf-8")
    code, out, shown = _run_on_a_terminal(federation, "model", "export", "-c", str(conf))
    assert code == 0 and json.loads(out)["retcode"] == 0, (out, shown)
    frames = [frame.strip() for frame in re.split(r"[\r\n]", shown) if frame.strip()]
    final = frames[-1]
    # e.g. "export: 100%|██████████| 4.06M/4.06M [00:00<00:00, 55.2MB/s]"
    match = re.fullmatch(r"export: 100%\|\S+\| ([\d.]+[kMG]?)/([\d.]+[kMG]?) \[\d\d:\d\d<00:00, .+/s\]", final)
    assert match and match.group(1) == match.group(2), frames
    assert "Traceback" not in shown
