"""Checkpoints as FATE-Flow lays them out: listed, read back verified, and substituted into a deployed child."""

from __future__ import annotations

import datetime
import hashlib
import shutil
from pathlib import Path

import pytest
import yaml

from fate_registry.errors import Reason, RegistryError
from fate_registry.fate_models import MODEL_ALIAS, STEP_NAME, ModelSpec, read_define_meta, write_party_model
from party_agent.checkpoints import (
    BufferDigest,
    list_checkpoints,
    read_checkpoint,
    substitute_checkpoint,
)

CPN = "hetero_lr_0"
META = "HeteroLogisticRegressionMeta"
PARAM = "HeteroLogisticRegressionParam"


@pytest.fixture
def version_dir(tmp_path: Path) -> Path:
    """The guest's slice of a HeteroLR model trained 30 epochs, keeping the last 3 checkpoints (27, 28, 29)."""
    return write_party_model(tmp_path / "cache", ModelSpec(checkpoints=3), "guest", 9999)


def _step_dir(version_dir: Path, step: int) -> Path:
    return version_dir / "checkpoint" / CPN / f"{step}#{STEP_NAME}"


def _sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def test_list_reports_every_committed_checkpoint_in_step_order(version_dir: Path) -> None:
    checkpoints = list_checkpoints(version_dir, CPN)
    assert [(c.step_index, c.step_name) for c in checkpoints] == [(27, STEP_NAME), (28, STEP_NAME), (29, STEP_NAME)]
    for c in checkpoints:
        directory = _step_dir(version_dir, c.step_index)
        assert c.models == {
            META: BufferDigest("LRModelMeta", _sha1(directory / f"{META}.pb")),
            PARAM: BufferDigest("LRModelParam", _sha1(directory / f"{PARAM}.pb")),
        }
        assert c.create_time == yaml.safe_load((directory / "database.yaml").read_text())["create_time"]
        datetime.datetime.fromisoformat(c.create_time)  # stored ISO, as FATE answers it


def test_list_is_empty_without_checkpoints(version_dir: Path) -> None:
    assert list_checkpoints(version_dir, "data_transform_0") == []
    assert list_checkpoints(version_dir / "no-such-version", CPN) == []


def test_list_skips_uncommitted_and_foreign_directories(version_dir: Path) -> None:
    (_step_dir(version_dir, 28) / "database.yaml").unlink()  # being written: no commit marker yet
    (version_dir / "checkpoint" / CPN / "notes").mkdir()  # no '#': not a checkpoint
    (version_dir / "checkpoint" / CPN / "31#x.txt").write_text("a file, not a directory")
    assert [c.step_index for c in list_checkpoints(version_dir, CPN)] == [27, 29]


def test_step_name_may_contain_hash(version_dir: Path) -> None:
    source = _step_dir(version_dir, 29)
    target = version_dir / "checkpoint" / CPN / "40#epoch#40"
    shutil.copytree(source, target)
    database = yaml.safe_load((target / "database.yaml").read_text())
    database.update(step_index=40, step_name="epoch#40")
    (target / "database.yaml").write_text(yaml.safe_dump(database))
    assert list_checkpoints(version_dir, CPN)[-1].step_name == "epoch#40"
    info, _ = read_checkpoint(version_dir, CPN, None, "epoch#40")
    assert info.step_index == 40


def test_database_disagreeing_with_directory_name_is_an_error(version_dir: Path) -> None:
    # FATE's list fails on such a checkpoint (ValueError); so does ours, with a clear DATA_LOSS.
    path = _step_dir(version_dir, 28) / "database.yaml"
    database = yaml.safe_load(path.read_text())
    database["step_index"] = 7
    path.write_text(yaml.safe_dump(database))
    with pytest.raises(RegistryError) as info:
        list_checkpoints(version_dir, CPN)
    assert info.value.reason is Reason.DATA_LOSS
    assert f"checkpoint/{CPN}/28#{STEP_NAME}" in info.value.message
    assert str(version_dir) not in info.value.message  # the agent's own paths stay private


@pytest.mark.parametrize(
    ("key", "value"),
    [("create_time", "yesterday"), ("models", {}), ("models", {"../x": {"sha1": "0", "buffer_name": "B"}})],
)
def test_malformed_database_is_data_loss(version_dir: Path, key: str, value: object) -> None:
    path = _step_dir(version_dir, 27) / "database.yaml"
    database = yaml.safe_load(path.read_text())
    database[key] = value
    path.write_text(yaml.safe_dump(database))
    with pytest.raises(RegistryError) as info:
        list_checkpoints(version_dir, CPN)
    assert info.value.reason is Reason.DATA_LOSS
    assert f"27#{STEP_NAME}" in info.value.message


def test_component_name_is_validated(version_dir: Path) -> None:
    with pytest.raises(RegistryError) as info:
        list_checkpoints(version_dir, "../define")
    assert info.value.reason is Reason.INVALID_ID


@pytest.mark.parametrize(("step_index", "step_name"), [(28, None), (None, STEP_NAME)])
def test_read_returns_verified_bytes(version_dir: Path, step_index: int | None, step_name: str | None) -> None:
    info, buffers = read_checkpoint(version_dir, CPN, step_index, step_name)
    # all three share the step name; by name, the last in list order wins, as in FATE's OrderedDict
    expected = 28 if step_index is not None else 29
    assert info.step_index == expected
    directory = _step_dir(version_dir, expected)
    assert buffers == {name: (directory / f"{name}.pb").read_bytes() for name in (META, PARAM)}
    assert {name: hashlib.sha1(data).hexdigest() for name, data in buffers.items()} == {
        name: digest.sha1 for name, digest in info.models.items()
    }


def test_read_answers_the_api_message(version_dir: Path) -> None:
    info, _ = read_checkpoint(version_dir, CPN, 27, None)
    proto = info.to_proto()
    assert (proto.step_index, proto.step_name) == (27, STEP_NAME)
    assert proto.models[PARAM].buffer_name == "LRModelParam"
    assert proto.models[PARAM].sha1 == info.models[PARAM].sha1
    stored = datetime.datetime.fromisoformat(info.create_time).replace(tzinfo=datetime.UTC)
    assert proto.create_time.ToDatetime(tzinfo=datetime.UTC) == stored


def test_tampered_buffer_is_data_loss_naming_the_file(version_dir: Path) -> None:
    path = _step_dir(version_dir, 29) / f"{PARAM}.pb"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(RegistryError) as info:
        read_checkpoint(version_dir, CPN, 29, None)
    assert info.value.reason is Reason.DATA_LOSS
    assert f"checkpoint/{CPN}/29#{STEP_NAME}/{PARAM}.pb" in info.value.message
    assert read_checkpoint(version_dir, CPN, 28, None)[0].step_index == 28  # the others are intact


def test_missing_buffer_is_data_loss_naming_the_file(version_dir: Path) -> None:
    (_step_dir(version_dir, 27) / f"{META}.pb").unlink()
    with pytest.raises(RegistryError) as info:
        read_checkpoint(version_dir, CPN, 27, None)
    assert info.value.reason is Reason.DATA_LOSS
    assert f"{META}.pb" in info.value.message


@pytest.mark.parametrize(("step_index", "step_name"), [(3, None), (None, "epoch_3")])
def test_unknown_checkpoint_is_404(version_dir: Path, step_index: int | None, step_name: str | None) -> None:
    with pytest.raises(RegistryError) as info:
        read_checkpoint(version_dir, CPN, step_index, step_name)
    assert info.value.reason is Reason.MODEL_NOT_FOUND
    assert info.value.message == "The checkpoint was not found."
    assert info.value.fate_retcode == 404


@pytest.mark.parametrize(("step_index", "step_name"), [(None, None), (28, STEP_NAME)])
def test_exactly_one_of_index_and_name(version_dir: Path, step_index: int | None, step_name: str | None) -> None:
    with pytest.raises(RegistryError) as info:
        read_checkpoint(version_dir, CPN, step_index, step_name)
    assert info.value.reason is Reason.INVALID_ARGUMENT
    assert "'step_index'" in info.value.message and "'step_name'" in info.value.message


def test_read_refuses_more_bytes_than_an_answer_carries(version_dir: Path) -> None:
    directory = _step_dir(version_dir, 29)
    size = sum((directory / f"{name}.pb").stat().st_size for name in (META, PARAM))
    assert read_checkpoint(version_dir, CPN, 29, None, max_bytes=size)[1]
    with pytest.raises(RegistryError) as info:
        read_checkpoint(version_dir, CPN, 29, None, max_bytes=size - 1)
    assert info.value.reason is Reason.ARCHIVE_TOO_LARGE


# -- substitution (deploy step 10) --------------------------------------------------------------


@pytest.fixture
def child_dir(version_dir: Path, tmp_path: Path) -> Path:
    """A staged child as deploy leaves it before step 10: the parent's buffers and define meta, no checkpoints."""
    child = tmp_path / "staging" / "child"
    shutil.copytree(version_dir, child, ignore=shutil.ignore_patterns("checkpoint"))
    return child


def test_substitution_replaces_the_alias_with_the_checkpoint(version_dir: Path, child_dir: Path) -> None:
    alias_dir = child_dir / "variables" / "data" / CPN / MODEL_ALIAS
    (alias_dir / "converted_model").mkdir()  # whatever was there goes, as in FATE
    written = substitute_checkpoint(child_dir, version_dir, CPN, MODEL_ALIAS, 28, None)

    prefix = f"variables/data/{CPN}/{MODEL_ALIAS}"
    expected = sorted(f"{prefix}/{n}" for n in (META, PARAM, f"{META}.json", f"{PARAM}.json", "database.yaml"))
    assert written == expected
    assert sorted(p.name for p in alias_dir.iterdir()) == sorted(Path(p).name for p in expected)
    checkpoint = _step_dir(version_dir, 28)
    _, buffers = read_checkpoint(version_dir, CPN, 28, None)
    for name in (META, PARAM):
        assert (alias_dir / name).read_bytes() == buffers[name]
        assert (alias_dir / f"{name}.json").read_bytes() == (checkpoint / f"{name}.json").read_bytes()
    assert (alias_dir / "database.yaml").read_bytes() == (checkpoint / "database.yaml").read_bytes()
    final_param = version_dir / "variables" / "data" / CPN / MODEL_ALIAS / PARAM
    assert (alias_dir / PARAM).read_bytes() != final_param.read_bytes()  # epoch 28 is not the final model
    assert read_define_meta(child_dir) == read_define_meta(version_dir)  # the proto index is unchanged
    assert not list(alias_dir.parent.glob(".*"))  # no building directory left behind


def test_substitution_by_name_takes_the_last_of_that_name(version_dir: Path, child_dir: Path) -> None:
    substitute_checkpoint(child_dir, version_dir, CPN, MODEL_ALIAS, None, STEP_NAME)
    alias_dir = child_dir / "variables" / "data" / CPN / MODEL_ALIAS
    assert (alias_dir / PARAM).read_bytes() == (_step_dir(version_dir, 29) / f"{PARAM}.pb").read_bytes()


def test_substitution_refuses_models_the_proto_index_lacks(version_dir: Path, child_dir: Path) -> None:
    path = child_dir / "define" / "define_meta.yaml"
    define_meta = read_define_meta(child_dir)
    define_meta["model_proto"][CPN][MODEL_ALIAS] = {"SomethingElse": "LRModelParam"}
    path.write_text(yaml.safe_dump(define_meta))
    before = sorted(p.name for p in (child_dir / "variables" / "data" / CPN / MODEL_ALIAS).iterdir())
    with pytest.raises(RegistryError) as info:
        substitute_checkpoint(child_dir, version_dir, CPN, MODEL_ALIAS, 28, None)
    assert info.value.reason is Reason.INVALID_ARGUMENT
    assert "proto index" in info.value.message
    assert sorted(p.name for p in (child_dir / "variables" / "data" / CPN / MODEL_ALIAS).iterdir()) == before


def test_substitution_of_a_damaged_checkpoint_leaves_the_child_unchanged(version_dir: Path, child_dir: Path) -> None:
    (_step_dir(version_dir, 28) / f"{PARAM}.pb").write_bytes(b"not the checkpoint")
    alias_dir = child_dir / "variables" / "data" / CPN / MODEL_ALIAS
    before = {p.name: p.read_bytes() for p in alias_dir.iterdir()}
    with pytest.raises(RegistryError) as info:
        substitute_checkpoint(child_dir, version_dir, CPN, MODEL_ALIAS, 28, None)
    assert info.value.reason is Reason.DATA_LOSS
    assert f"{PARAM}.pb" in info.value.message
    assert {p.name: p.read_bytes() for p in alias_dir.iterdir()} == before
    assert sorted(p.name for p in alias_dir.parent.iterdir()) == [MODEL_ALIAS]


def test_substitution_for_a_component_without_checkpoints_is_refused(version_dir: Path, child_dir: Path) -> None:
    # FATE silently ignores the request; we refuse it, so the user knows the checkpoint was not deployed.
    with pytest.raises(RegistryError) as info:
        substitute_checkpoint(child_dir, version_dir, "data_transform_0", MODEL_ALIAS, 1, None)
    assert info.value.reason is Reason.MODEL_NOT_FOUND
    assert "no checkpoints" in info.value.message


def test_substitution_of_an_unknown_step_is_404(version_dir: Path, child_dir: Path) -> None:
    with pytest.raises(RegistryError) as info:
        substitute_checkpoint(child_dir, version_dir, CPN, MODEL_ALIAS, 3, None)
    assert info.value.fate_retcode == 404
