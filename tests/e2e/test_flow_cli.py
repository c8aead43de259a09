"""The `flow` CLI as a user types it, against a federation of real processes."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path
from typing import Any

from tests.conftest import GeneratedModel
from tests.flow_cli import flow, write_conf
from tests.support.federation import LocalFederation


def _import_conf(model: GeneratedModel, role: str, party: str, archive: Path, **extra: Any) -> dict[str, Any]:
    return {
        "role": role,
        "party_id": int(party),
        "model_id": model.model_id,
        "model_version": model.version,
        "file": str(archive),
        "force_update": False,
        **extra,
    }


def test_import_info_export_as_a_user_types_it(
    federation: LocalFederation, model: GeneratedModel, tmp_path: Path
) -> None:
    for (role, party), archive in model.archives.items():
        code, answer = flow(
            federation,
            "model",
            "import",
            "-c",
            write_conf(tmp_path, f"i-{role}.json", _import_conf(model, role, party, archive)),
        )
        assert code == 0 and answer["retcode"] == 0, answer
        assert answer["data"]["model_version"] == model.version and answer["data"]["role"] == role
    code, answer = flow(
        federation, "model", "get-model-info", "--model-id", model.model_id, "--model-version", model.version
    )
    assert code == 0 and answer["retmsg"] == "Query model info from db success."
    assert sorted((r["f_role"], r["f_party_id"]) for r in answer["data"]) == sorted(model.archives)
    assert all(r["f_roles"] == {"guest": [9999], "host": [10000], "arbiter": [10000]} for r in answer["data"])
    code, answer = flow(
        federation,
        "model",
        "get-model-info",
        "--model-id",
        model.model_id,
        "--model-version",
        model.version,
        "-r",
        "host",
        "-p",
        "10000",
        "--detail",
    )
    assert code == 0 and len(answer["data"]) == 1 and answer["data"][0]["f_train_dsl"]["components"]
    export = {
        "role": "guest",
        "party_id": 9999,
        "model_id": model.model_id,
        "model_version": model.version,
        "output_path": str(tmp_path / "out"),
    }
    code, answer = flow(federation, "model", "export", "-c", write_conf(tmp_path, "e.json", export))
    assert code == 0 and answer["retcode"] == 0
    assert answer["retmsg"] == f"download successfully, please check {answer['file']}"
    assert zipfile.ZipFile(answer["file"]).testzip() is None
    methods = {i.compress_type for i in zipfile.ZipFile(answer["file"]).infolist()}
    assert methods == {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}  # sidecars deflated, the rest stored
    for name, args, conf in (("flag", ("--stored",), export), ("key", (), {**export, "stored": True})):
        conf = {**conf, "output_path": str(tmp_path / name)}
        code, answer = flow(federation, "model", "export", "-c", write_conf(tmp_path, f"{name}.json", conf), *args)
        assert code == 0 and answer["retcode"] == 0, answer
        assert {i.compress_type for i in zipfile.ZipFile(answer["file"]).infolist()} == {zipfile.ZIP_STORED}


def _hostile_archive(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.zip"
    with zipfile.ZipFile(path, "w") as zf:
        if kind == "zip-slip":
            zf.writestr("../../escaped", b"x")
        else:
            info = zipfile.ZipInfo("variables/data/link")
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return path


def test_bad_input_gets_a_clear_error_and_changes_nothing(
    federation: LocalFederation, model: GeneratedModel, tmp_path: Path
) -> None:
    cache = federation.model_cache("9999")
    guest = model.archives["guest", "9999"]
    ok_conf = _import_conf(model, "guest", "9999", guest)
    code, answer = flow(federation, "model", "import", "-c", write_conf(tmp_path, "ok.json", ok_conf))
    assert code == 0, answer
    before = sorted(p.as_posix() for p in cache.rglob("*"))

    invalid = tmp_path / "invalid.json"
    invalid.write_text('{"role": "guest",\n "party_id": }')
    missing_key = {k: v for k, v in ok_conf.items() if k != "model_version"}
    cases: list[tuple[list[str], int, str]] = [
        (["model", "import", "-c", str(tmp_path / "nope.json")], 100, "nope.json"),
        (["model", "import", "-c", str(invalid)], 100, "line 2"),
        (["model", "import", "-c", write_conf(tmp_path, "mk.json", missing_key)], 101, "model_version"),
        (["model", "import", "-c", write_conf(tmp_path, "dup.json", ok_conf)], 409, "Model already exists."),
        (
            [
                "model",
                "import",
                "-c",
                write_conf(
                    tmp_path,
                    "role.json",
                    {**ok_conf, "role": "host", "model_version": "x1"},
                ),
            ],
            400,
            'Party id "9999" is not in role "host"',
        ),
        (
            [
                "model",
                "import",
                "-c",
                write_conf(tmp_path, "sha.json", {**ok_conf, "model_version": "x2", "sha256": "0" * 64}),
            ],
            102,
            "hash mismatch",
        ),
        (
            [
                "model",
                "import",
                "-c",
                write_conf(
                    tmp_path,
                    "slip.json",
                    {**ok_conf, "model_version": "x3", "file": str(_hostile_archive(tmp_path, "zip-slip"))},
                ),
            ],
            102,
            "'..'",
        ),
        (
            [
                "model",
                "import",
                "-c",
                write_conf(
                    tmp_path,
                    "link.json",
                    {**ok_conf, "model_version": "x4", "file": str(_hostile_archive(tmp_path, "link"))},
                ),
            ],
            102,
            "symbolic link",
        ),
        (
            [
                "model",
                "import",
                "-c",
                write_conf(
                    tmp_path,
                    "slash.json",
                    {**ok_conf, "model_version": "a/b"},
                ),
            ],
            101,
            "'/'",
        ),
        (
            [
                "model",
                "import",
                "-c",
                write_conf(tmp_path, "dots.json", {**ok_conf, "model_id": "..", "model_version": "x5"}),
            ],
            101,
            "'..'",
        ),
        (
            [
                "model",
                "export",
                "-c",
                write_conf(
                    tmp_path, "unknown.json", {**ok_conf, "model_version": "nosuch", "output_path": str(tmp_path / "o")}
                ),
            ],
            404,
            "does not exist",
        ),
        (
            ["model", "get-model-info", "--model-id", model.model_id, "--model-version", "nosuch"],
            100,
            "cannot find model",
        ),
    ]
    for args, retcode, needle in cases:
        code, answer = flow(federation, *args)
        assert code != 0, (args, answer)
        assert answer["retcode"] == retcode, (args, answer)
        assert needle in answer["retmsg"], (args, answer)
    assert sorted(p.as_posix() for p in cache.rglob("*")) == before
    assert not (tmp_path.parent / "escaped").exists()


def test_restore_without_a_model_store_says_so(federation: LocalFederation, tmp_path: Path) -> None:
    code, answer = flow(
        federation,
        "model",
        "import",
        "-c",
        write_conf(tmp_path, "r.json", {"role": "guest", "party_id": 9999, "model_id": "m", "model_version": "v"}),
        "--from-database",
    )
    assert code != 0 and answer["retcode"] == 101 and "no model store is configured" in answer["retmsg"], answer
