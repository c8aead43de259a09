"""The realistic-model factory writes FATE 1.11's layout and buffers; the archive packs like FATE-Flow."""

from __future__ import annotations

import hashlib
import json
import math
import zipfile
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from google.protobuf import json_format
from google.protobuf.message import Message

from fate_registry.fate import (
    boosting_tree_model_meta_pb2,
    boosting_tree_model_param_pb2,
    data_transform_param_pb2,
    feature_binning_meta_pb2,
    feature_binning_param_pb2,
    homo_nn_model_param_pb2,
    lr_model_meta_pb2,
    lr_model_param_pb2,
)
from fate_registry.fate_models import (
    BUFFER_CLASSES,
    STEP_NAME,
    ModelSpec,
    build_fate_archive,
    read_define_meta,
    read_pipeline,
    sha256_file,
    write_federation,
    write_party_model,
)
from fate_registry.identity import party_model_id

MODEL_ID = "arbiter-10000#guest-9999#host-10000#model"
MIB = 1024 * 1024
M = TypeVar("M", bound=Message)


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _dir_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _parse(path: Path, cls: type[M]) -> M:
    message = cls()
    message.ParseFromString(path.read_bytes())
    return message


def _parse_param(path: Path) -> lr_model_param_pb2.LRModelParam:
    return _parse(path, lr_model_param_pb2.LRModelParam)


def _as_json(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


@pytest.fixture
def federation(tmp_path: Path) -> tuple[ModelSpec, dict[tuple[str, str], Path]]:
    spec = ModelSpec(model_version="202111091122168817080", checkpoints=2)
    caches = {"9999": tmp_path / "9999" / "model_local_cache", "10000": tmp_path / "10000" / "model_local_cache"}
    return spec, write_federation(caches, spec)


def test_identity_follows_fate() -> None:
    spec = ModelSpec(roles={"host": [10001, 10000], "guest": [9999], "arbiter": [10000]})
    assert spec.model_id == "arbiter-10000#guest-9999#host-10000_10001#model"
    assert spec.party_model_id("host", 10001) == "host#10001#arbiter-10000#guest-9999#host-10000_10001#model"
    assert spec.initiator == 9999
    assert len(spec.version) >= 20 and spec.version.isdigit()
    assert ModelSpec().version != spec.version


def test_spec_rejects_inconsistent_roles() -> None:
    with pytest.raises(ValueError):
        ModelSpec(roles={"guest": [9999]})
    with pytest.raises(ValueError):
        ModelSpec(initiator_party_id=10000)
    with pytest.raises(ValueError):
        ModelSpec(roles={"guest": [9999], "host": [10000], "local": [0]})


def test_every_party_gets_its_directory(
    tmp_path: Path, federation: tuple[ModelSpec, dict[tuple[str, str], Path]]
) -> None:
    spec, dirs = federation
    assert set(dirs) == {("guest", "9999"), ("host", "10000"), ("arbiter", "10000")}
    cache_10000 = tmp_path / "10000" / "model_local_cache"
    assert dirs[("host", "10000")] == cache_10000 / f"host#10000#{MODEL_ID}" / spec.version
    assert dirs[("arbiter", "10000")] == cache_10000 / f"arbiter#10000#{MODEL_ID}" / spec.version
    assert dirs[("guest", "9999")].parent.name == party_model_id("guest", 9999, MODEL_ID)
    assert all((version_dir / ".lock").is_file() for version_dir in dirs.values())


def test_proto_index_files_exist_and_parse(federation: tuple[ModelSpec, dict[tuple[str, str], Path]]) -> None:
    _, dirs = federation
    for (role, _), version_dir in dirs.items():
        define_meta = read_define_meta(version_dir)
        assert set(define_meta) == {"component_define", "model_proto"}
        assert set(define_meta["component_define"]) == set(define_meta["model_proto"])
        assert define_meta["model_proto"]["pipeline"] == {"pipeline": {"Pipeline": "Pipeline"}}
        for component, aliases in define_meta["model_proto"].items():
            run_parameters = version_dir / "run_parameters" / component / "run_parameters.json"
            assert isinstance(json.loads(run_parameters.read_text()), dict)
            for alias, proto_index in aliases.items():
                for model_name, class_name in proto_index.items():
                    path = version_dir / "variables" / "data" / component / alias / model_name
                    message = _parse(path, BUFFER_CLASSES[class_name])
                    assert message.SerializeToString(), f"{role} {component} {model_name} is empty"
                    sidecar = json.loads(path.with_name(f"{model_name}.json").read_text())
                    assert sidecar == _as_json(message)


def test_buffers_per_role_match_fate(federation: tuple[ModelSpec, dict[tuple[str, str], Path]]) -> None:
    _, dirs = federation
    guest, host, arbiter = dirs[("guest", "9999")], dirs[("host", "10000")], dirs[("arbiter", "10000")]
    for version_dir in (guest, host):
        assert list(read_define_meta(version_dir)["component_define"]) == [
            "data_transform_0",
            "hetero_lr_0",
            "pipeline",
        ]
    assert read_define_meta(arbiter)["component_define"] == {
        "hetero_lr_0": {"module_name": "HeteroLR"},
        "pipeline": {"module_name": "Pipeline"},
    }
    assert not (arbiter / "variables" / "data" / "data_transform_0").exists()
    assert not (arbiter / "run_parameters" / "data_transform_0").exists()

    for version_dir, role, party, features in ((guest, "guest", 9999, 10), (host, "host", 10000, 20)):
        param = _parse(
            version_dir / "variables/data/data_transform_0/model/DataTransformParam",
            data_transform_param_pb2.DataTransformParam,
        )
        assert list(param.header) == [f"x{i}" for i in range(features)]
        assert list(param.anonymous_header) == [f"{role}_{party}_x{i}" for i in range(features)]
        assert param.label_name == ("y" if role == "guest" else "")

    meta = _parse(
        guest / "variables/data/hetero_lr_0/model/HeteroLogisticRegressionMeta", lr_model_meta_pb2.LRModelMeta
    )
    assert (meta.penalty, meta.optimizer, meta.max_iter, meta.module) == ("L2", "rmsprop", 30, "")
    host_meta = _parse(
        host / "variables/data/hetero_lr_0/model/HeteroLogisticRegressionMeta", lr_model_meta_pb2.LRModelMeta
    )
    assert meta.fit_intercept and not host_meta.fit_intercept

    host_param = _parse_param(host / "variables/data/hetero_lr_0/model/HeteroLogisticRegressionParam")
    assert len(host_param.weight) == 20 and host_param.intercept == 0.0 and host_param.best_iteration == -1
    arbiter_param = _parse_param(arbiter / "variables/data/hetero_lr_0/model/HeteroLogisticRegressionParam")
    assert not arbiter_param.weight and not arbiter_param.header
    assert len(arbiter_param.loss_history) == 30 and arbiter_param.loss_history[0] == pytest.approx(0.6931, abs=1e-4)


def test_pipeline_is_a_trained_parent_model(federation: tuple[ModelSpec, dict[tuple[str, str], Path]]) -> None:
    spec, dirs = federation
    for (role, _), version_dir in dirs.items():
        pipeline = read_pipeline(version_dir)
        assert pipeline.parent is True and pipeline.loaded_times == 0
        assert json.loads(pipeline.parent_info) == {}
        assert (pipeline.model_id, pipeline.model_version) == (MODEL_ID, spec.version)
        assert pipeline.fate_version == "1.11.4"
        assert json.loads(pipeline.roles) == {"guest": [9999], "host": [10000], "arbiter": [10000]}
        assert (pipeline.initiator_role, pipeline.initiator_party_id) == ("guest", 9999)
        train_conf = json.loads(pipeline.train_runtime_conf)
        assert train_conf["dsl_version"] == 2 and train_conf["role"] == json.loads(pipeline.roles)
        assert train_conf["job_parameters"]["common"]["model_version"] == spec.version
        on_party = json.loads(pipeline.runtime_conf_on_party)
        assert on_party["job_parameters"]["model_id"] == MODEL_ID
        train_dsl = json.loads(pipeline.train_dsl)
        assert list(train_dsl["components"]) == [
            "reader_0",
            "data_transform_0",
            "intersection_0",
            "hetero_lr_0",
            "evaluation_0",
        ]
        code_path = json.loads(pipeline.inference_dsl)["components"]["hetero_lr_0"]["CodePath"]
        assert code_path == {"guest": "HeteroLRGuest", "host": "HeteroLRHost", "arbiter": "HeteroLRArbiter"}[role]


def test_checkpoints_are_committed_and_verifiable(federation: tuple[ModelSpec, dict[tuple[str, str], Path]]) -> None:
    _, dirs = federation
    for version_dir in dirs.values():
        root = version_dir / "checkpoint" / "hetero_lr_0"
        assert sorted(p.name for p in root.iterdir()) == [f"28#{STEP_NAME}", f"29#{STEP_NAME}"]
        for directory in root.iterdir():
            database = yaml.safe_load((directory / "database.yaml").read_text())
            step_index, step_name = directory.name.split("#", 1)
            assert (database["step_index"], database["step_name"]) == (int(step_index), step_name)
            assert isinstance(database["create_time"], str)
            assert set(database["models"]) == {"HeteroLogisticRegressionMeta", "HeteroLogisticRegressionParam"}
            for model_name, entry in database["models"].items():
                data = (directory / f"{model_name}.pb").read_bytes()
                assert hashlib.sha1(data).hexdigest() == entry["sha1"]
                message = BUFFER_CLASSES[entry["buffer_name"]]()
                message.ParseFromString(data)
                assert json.loads((directory / f"{model_name}.json").read_text()) == _as_json(message)
        last = _parse_param(root / f"29#{STEP_NAME}" / "HeteroLogisticRegressionParam.pb")
        final = _parse_param(version_dir / "variables/data/hetero_lr_0/model/HeteroLogisticRegressionParam")
        assert last == final


def test_homo_lr_roles_and_shared_weights(tmp_path: Path) -> None:
    spec = ModelSpec(algorithm="homo_lr")
    dirs = write_federation({"9999": tmp_path / "a", "10000": tmp_path / "b"}, spec)
    arbiter = dirs[("arbiter", "10000")]
    assert list(read_define_meta(arbiter)["model_proto"]) == ["pipeline"]
    params = []
    for role in ("guest", "host"):
        version_dir = dirs[(role, "9999" if role == "guest" else "10000")]
        model = version_dir / "variables/data/homo_lr_0/model"
        meta = _parse(model / "HomoLogisticRegressionMeta", lr_model_meta_pb2.LRModelMeta)
        assert (meta.module, meta.optimizer, meta.fit_intercept) == ("HomoLR", "sgd", True)
        param = _parse_param(model / "HomoLogisticRegressionParam")
        assert param.iters == len(param.loss_history) - 1 == 29
        assert param.best_iteration == list(param.loss_history).index(min(param.loss_history))
        params.append(param)
    assert params[0].weight == params[1].weight and len(params[0].weight) == 30
    assert params[0].loss_history != params[1].loss_history


def test_string_party_ids_keep_their_type(tmp_path: Path) -> None:
    spec = ModelSpec(roles={"guest": ["9999"], "host": ["10000"]})
    version_dir = write_party_model(tmp_path, spec, "host", 10000)
    pipeline = read_pipeline(version_dir)
    assert json.loads(pipeline.roles) == {"guest": ["9999"], "host": ["10000"]}
    assert json.loads(pipeline.train_runtime_conf)["initiator"]["party_id"] == "9999"
    assert pipeline.initiator_party_id == 9999
    assert version_dir.parent.name == "host#10000#guest-9999#host-10000#model"


def test_target_bytes_grows_the_param_buffer(tmp_path: Path) -> None:
    spec = ModelSpec(target_bytes=20 * MIB)
    version_dir = write_party_model(tmp_path, spec, "guest", 9999)
    assert abs(_dir_size(version_dir) - 20 * MIB) <= 2 * MIB
    path = version_dir / "variables/data/hetero_lr_0/model/HeteroLogisticRegressionParam"
    param = _parse_param(path)
    assert len(param.header) > 100_000
    assert list(param.header) == [f"x{i}" for i in range(len(param.header))]
    assert set(param.weight) == set(param.header)
    assert param.iters == 30 and param.best_iteration == -1
    sidecar = json.loads(path.with_name(path.name + ".json").read_text())
    assert sidecar == _as_json(param)
    arbiter_dir = write_party_model(tmp_path, spec, "arbiter", 10000)
    assert _dir_size(arbiter_dir) < 64 * 1024


def test_target_bytes_grows_checkpoints_too(tmp_path: Path) -> None:
    spec = ModelSpec(target_bytes=4 * MIB, checkpoints=2, algorithm="homo_lr")
    version_dir = write_party_model(tmp_path, spec, "host", 10000)
    assert abs(_dir_size(version_dir) - 4 * MIB) <= 4 * MIB // 10
    final = _parse_param(version_dir / "variables/data/homo_lr_0/model/HomoLogisticRegressionParam")
    for directory in (version_dir / "checkpoint" / "homo_lr_0").iterdir():
        database = yaml.safe_load((directory / "database.yaml").read_text())
        data = (directory / "HomoLogisticRegressionParam.pb").read_bytes()
        assert hashlib.sha1(data).hexdigest() == database["models"]["HomoLogisticRegressionParam"]["sha1"]
        checkpoint = lr_model_param_pb2.LRModelParam.FromString(data)
        assert list(checkpoint.header) == list(final.header)
        assert len(checkpoint.loss_history) == database["step_index"] + 1


def test_weights_are_deterministic_by_seed(tmp_path: Path) -> None:
    def weights(seed: int, where: str) -> dict[str, float]:
        spec = ModelSpec(seed=seed, model_version="1", target_bytes=256 * 1024)
        version_dir = write_party_model(tmp_path / where, spec, "guest", 9999)
        return dict(_parse_param(version_dir / "variables/data/hetero_lr_0/model/HeteroLogisticRegressionParam").weight)

    assert weights(7, "a") == weights(7, "b")
    assert weights(7, "c") != weights(8, "d")


def test_existing_version_is_not_overwritten(tmp_path: Path) -> None:
    spec = ModelSpec()
    write_party_model(tmp_path, spec, "guest", 9999)
    with pytest.raises(FileExistsError):
        write_party_model(tmp_path, spec, "guest", 9999)
    with pytest.raises(ValueError):
        write_party_model(tmp_path, spec, "guest", 10000)


def test_fate_archive_packs_the_whole_version_dir(
    tmp_path: Path, federation: tuple[ModelSpec, dict[tuple[str, str], Path]]
) -> None:
    spec, dirs = federation
    version_dir = dirs[("host", "10000")]
    out_dir = tmp_path / "temp"
    archive = build_fate_archive(version_dir, out_dir, "host", 10000, spec.model_id, spec.version)

    assert archive == out_dir / f"host#10000#{MODEL_ID}_{spec.version}.zip"
    import_config = json.loads((version_dir / "import_model.json").read_text())
    assert import_config == {
        "role": "host",
        "party_id": 10000,
        "model_id": MODEL_ID,
        "model_version": spec.version,
        "file": str(archive),
        "force_update": False,
    }
    assert (version_dir / "import_model.json").read_text().startswith('{\n    "role": "host",')
    with zipfile.ZipFile(archive) as zf:
        infos = {info.filename.rstrip("/"): info for info in zf.infolist()}
        names = {name for name, info in infos.items() if not info.is_dir()}
        assert names == _files(version_dir)
        assert {"import_model.json", ".lock", "define/define_meta.yaml"} <= names
        assert "variables" in infos and infos["variables"].is_dir()
        assert all(not name.startswith(("/", "..")) for name in infos)
        assert all(info.compress_type == zipfile.ZIP_DEFLATED for info in infos.values() if not info.is_dir())
        pipeline_bytes = zf.read("variables/data/pipeline/pipeline/Pipeline")
    assert pipeline_bytes == (version_dir / "variables/data/pipeline/pipeline/Pipeline").read_bytes()
    assert sha256_file(archive) == hashlib.sha256(archive.read_bytes()).hexdigest()
    with pytest.raises(ValueError):
        build_fate_archive(version_dir, version_dir / "inside", "host", 10000, spec.model_id, spec.version)
    assert not (version_dir / "inside").exists()


def test_several_hosts_each_get_their_own_slice(tmp_path: Path) -> None:
    spec = ModelSpec(roles={"guest": [9999], "host": [10000, 10001], "arbiter": [10000]})
    dirs = write_federation({"9999": tmp_path / "a", "10000": tmp_path / "b", "10001": tmp_path / "c"}, spec)
    assert len(dirs) == 4
    second_host = dirs[("host", "10001")]
    assert second_host.parent.name == "host#10001#arbiter-10000#guest-9999#host-10000_10001#model"
    param = _parse(
        second_host / "variables/data/data_transform_0/model/DataTransformParam",
        data_transform_param_pb2.DataTransformParam,
    )
    assert param.anonymous_header[0] == "host_10001_x0"
    run_parameters = json.loads((second_host / "run_parameters/data_transform_0/run_parameters.json").read_text())
    assert run_parameters == {"output_format": "dense", "with_label": False}
    first = _parse_param(dirs[("host", "10000")] / "variables/data/hetero_lr_0/model/HeteroLogisticRegressionParam")
    second = _parse_param(second_host / "variables/data/hetero_lr_0/model/HeteroLogisticRegressionParam")
    assert first.weight != second.weight


# --- HeteroSecureBoost -------------------------------------------------------------------------

SBT_PARAM = "variables/data/hetero_secure_boost_0/model/HeteroSecureBoostingTree{}Param"
SBT_META = "variables/data/hetero_secure_boost_0/model/HeteroSecureBoostingTree{}Meta"
BINNING_PARAM = "variables/data/hetero_feature_binning_0/model/FeatureBinningParam"


@pytest.fixture
def secureboost(tmp_path: Path) -> tuple[ModelSpec, dict[tuple[str, str], Path]]:
    spec = ModelSpec(algorithm="hetero_secureboost", seed=3)
    return spec, write_federation({"9999": tmp_path / "9999", "10000": tmp_path / "10000"}, spec)


def _sbt_param(version_dir: Path, side: str) -> boosting_tree_model_param_pb2.BoostingTreeModelParam:
    return _parse(version_dir / SBT_PARAM.format(side), boosting_tree_model_param_pb2.BoostingTreeModelParam)


def _binning_param(version_dir: Path) -> feature_binning_param_pb2.FeatureBinningParam:
    return _parse(version_dir / BINNING_PARAM, feature_binning_param_pb2.FeatureBinningParam)


def test_secureboost_buffers_per_role_match_fate(
    secureboost: tuple[ModelSpec, dict[tuple[str, str], Path]],
) -> None:
    spec, dirs = secureboost
    guest, host, arbiter = dirs[("guest", "9999")], dirs[("host", "10000")], dirs[("arbiter", "10000")]
    for version_dir, side in ((guest, "Guest"), (host, "Host")):
        define_meta = read_define_meta(version_dir)
        assert define_meta["component_define"] == {
            "data_transform_0": {"module_name": "DataTransform"},
            "hetero_feature_binning_0": {"module_name": "HeteroFeatureBinning"},
            "hetero_secure_boost_0": {"module_name": "HeteroSecureBoost"},
            "pipeline": {"module_name": "Pipeline"},
        }
        assert define_meta["model_proto"]["hetero_feature_binning_0"] == {
            "model": {"FeatureBinningMeta": "FeatureBinningMeta", "FeatureBinningParam": "FeatureBinningParam"}
        }
        assert define_meta["model_proto"]["hetero_secure_boost_0"] == {
            "model": {
                f"HeteroSecureBoostingTree{side}Meta": "BoostingTreeModelMeta",
                f"HeteroSecureBoostingTree{side}Param": "BoostingTreeModelParam",
            }
        }
    assert list(read_define_meta(arbiter)["model_proto"]) == ["pipeline"]
    assert not (arbiter / "run_parameters" / "hetero_secure_boost_0").exists()

    pipeline = read_pipeline(guest)
    assert list(json.loads(pipeline.train_dsl)["components"]) == [
        "reader_0",
        "data_transform_0",
        "intersection_0",
        "hetero_feature_binning_0",
        "hetero_secure_boost_0",
        "evaluation_0",
    ]
    dsl = json.loads(pipeline.train_dsl)["components"]
    assert dsl["hetero_feature_binning_0"]["input"] == {"data": {"data": ["intersection_0.data"]}}
    assert dsl["hetero_feature_binning_0"]["output"] == {"data": ["data"], "model": ["model"]}
    assert dsl["hetero_secure_boost_0"]["input"] == {"data": {"train_data": ["hetero_feature_binning_0.data"]}}
    inference = json.loads(read_pipeline(host).inference_dsl)["components"]
    assert inference["hetero_secure_boost_0"]["CodePath"] == "HeteroSecureBoostingTreeHost"
    assert inference["hetero_feature_binning_0"]["CodePath"] == "HeteroFeatureBinningHost"
    run_parameters = json.loads((host / "run_parameters/hetero_secure_boost_0/run_parameters.json").read_text())
    assert (run_parameters["num_trees"], run_parameters["learning_rate"]) == (5, 0.3)
    assert spec.model_id == MODEL_ID

    for (role, _), version_dir in dirs.items():
        for component, aliases in read_define_meta(version_dir)["model_proto"].items():
            for alias, proto_index in aliases.items():
                for model_name, class_name in proto_index.items():
                    path = version_dir / "variables" / "data" / component / alias / model_name
                    message = _parse(path, BUFFER_CLASSES[class_name])
                    assert message.SerializeToString(), f"{role} {component} {model_name} is empty"
                    assert json.loads(path.with_name(f"{model_name}.json").read_text()) == _as_json(message)


def test_secureboost_meta_follows_fate(secureboost: tuple[ModelSpec, dict[tuple[str, str], Path]]) -> None:
    _, dirs = secureboost
    meta = _parse(
        dirs[("guest", "9999")] / SBT_META.format("Guest"), boosting_tree_model_meta_pb2.BoostingTreeModelMeta
    )
    assert (meta.learning_rate, meta.num_trees, meta.quantile_meta.bin_num) == (0.3, 5, 32)
    assert (meta.tree_meta.max_depth, meta.tree_meta.min_sample_split, meta.tree_meta.min_leaf_node) == (3, 2, 1)
    assert meta.tree_meta.criterion_meta.criterion_method == "xgboost"
    assert list(meta.tree_meta.criterion_meta.criterion_param) == [0.1, 0]
    assert (meta.objective_meta.objective, meta.task_type, meta.n_iter_no_change) == (
        "cross_entropy",
        "classification",
        True,
    )
    assert (meta.module, meta.boosting_strategy, meta.tol) == ("HeteroSecureBoost", "std", 0.0001)
    host_meta = _parse(
        dirs[("host", "10000")] / SBT_META.format("Host"), boosting_tree_model_meta_pb2.BoostingTreeModelMeta
    )
    assert (host_meta.num_trees, host_meta.module, host_meta.learning_rate, host_meta.task_type) == (
        5,
        "HeteroSecureBoost",
        0.0,
        "",
    )
    assert not host_meta.HasField("objective_meta")


def test_secureboost_trees_carry_sitenames_and_agree(
    secureboost: tuple[ModelSpec, dict[tuple[str, str], Path]],
) -> None:
    _, dirs = secureboost
    guest, host = _sbt_param(dirs[("guest", "9999")], "Guest"), _sbt_param(dirs[("host", "10000")], "Host")
    assert (guest.tree_num, guest.tree_dim, guest.num_classes, list(guest.classes_)) == (5, 1, 2, ["0", "1"])
    assert guest.model_name == host.model_name == "hetero_sbt"
    assert list(guest.tree_plan) == list(host.tree_plan) == []
    assert len(guest.losses) == 5 and guest.init_score[0] == pytest.approx(math.log(357 / 212), abs=1e-6)
    assert dict(guest.feature_name_fid_mapping) == {i: f"x{i}" for i in range(10)}
    assert dict(host.feature_name_fid_mapping) == {i: f"x{i}" for i in range(20)}
    assert not guest.anonymous_name_mapping
    assert dict(host.anonymous_name_mapping) == {f"host_10000_x{i}": f"x{i}" for i in range(20)}

    sitenames = set()
    for guest_tree, host_tree in zip(guest.trees_, host.trees_, strict=True):
        assert len(guest_tree.tree_) == 15
        for guest_node, host_node in zip(guest_tree.tree_, host_tree.tree_, strict=True):
            shape = ("id", "sitename", "is_leaf", "left_nodeid", "right_nodeid")
            assert [getattr(guest_node, f) for f in shape] == [getattr(host_node, f) for f in shape]
            sitenames.add(guest_node.sitename)
            if guest_node.is_leaf:
                assert guest_node.sitename == "guest:9999" and guest_node.fid == -1
                assert host_node.weight == 0.0
            elif guest_node.sitename == "guest:9999":
                assert guest_node.id in guest_tree.split_maskdict and guest_node.id not in host_tree.split_maskdict
            else:
                assert guest_node.id in host_tree.split_maskdict and guest_node.id not in guest_tree.split_maskdict
                assert host_node.fid == guest_node.fid
            assert guest_node.bid == host_node.bid == 0.0
    assert sitenames == {"guest:9999", "host:10000"}

    assert {fi.sitename for fi in guest.feature_importances} == {"guest:9999", "host:10000"}
    for fi in guest.feature_importances:
        assert fi.main == "split" and fi.importance >= 1
        if fi.sitename == "host:10000":
            assert fi.fid == 0 and fi.fullname.startswith("host_10000_x")
        else:
            assert fi.fullname == f"x{fi.fid}"
    assert {fi.sitename for fi in host.feature_importances} == {"hostLocal"}
    assert {fi.fullname for fi in host.feature_importances} <= set(host.feature_name_fid_mapping.values())


def test_secureboost_binning_carries_party_ids(secureboost: tuple[ModelSpec, dict[tuple[str, str], Path]]) -> None:
    _, dirs = secureboost
    guest, host = _binning_param(dirs[("guest", "9999")]), _binning_param(dirs[("host", "10000")])
    assert (guest.binning_result.role, guest.binning_result.party_id) == ("guest", "9999")
    assert list(guest.header) == [f"x{i}" for i in range(10)]
    assert list(guest.header_anonymous) == [f"guest_9999_x{i}" for i in range(10)]
    assert guest.model_name == "binning_model"
    [host_result] = guest.host_results
    assert (host_result.role, host_result.party_id) == ("host", "10000")
    assert set(host_result.binning_result) == {f"host_10000_x{i}" for i in range(20)}
    column = host_result.binning_result["host_10000_x0"]
    assert not column.split_points and len(column.woe_array) == 10
    assert sum(column.event_count_array) == 357 and sum(column.non_event_count_array) == 212
    assert column.iv == pytest.approx(sum(column.iv_array))
    own = guest.binning_result.binning_result["x0"]
    assert len(own.split_points) == 10 and list(own.split_points) == sorted(own.split_points) and own.iv > 0
    multi = guest.multi_class_result
    assert (list(multi.labels), list(multi.host_party_ids), multi.has_host_result) == (["0", "1"], ["10000"], True)
    assert list(multi.results) == [guest.binning_result] and list(multi.host_results) == [host_result]
    assert not guest.HasField("transform_binning_result")

    assert (host.binning_result.role, host.binning_result.party_id) == ("host", "10000")
    assert list(host.header_anonymous) == [f"host_10000_x{i}" for i in range(20)]
    assert not host.host_results and not host.binning_result.binning_result["x3"].woe_array
    assert list(host.multi_class_result.host_party_ids) == ["10000"] and not host.multi_class_result.has_host_result
    meta = _parse(
        dirs[("host", "10000")] / "variables/data/hetero_feature_binning_0/model/FeatureBinningMeta",
        feature_binning_meta_pb2.FeatureBinningMeta,
    )
    assert (meta.method, meta.bin_num, meta.need_run, list(meta.cols)) == ("quantile", 10, True, list(host.header))
    assert list(meta.transform_param.transform_cols) == list(range(20))


def test_secureboost_with_two_hosts_and_string_ids(tmp_path: Path) -> None:
    spec = ModelSpec(
        algorithm="hetero_secureboost", roles={"guest": ["9999"], "host": ["10000", "10001"], "arbiter": ["10000"]}
    )
    dirs = write_federation({p: tmp_path / p for p in ("9999", "10000", "10001")}, spec)
    guest = _binning_param(dirs[("guest", "9999")])
    assert [r.party_id for r in guest.host_results] == ["10000", "10001"]
    assert list(guest.multi_class_result.host_party_ids) == ["10000", "10001"]
    second = _sbt_param(dirs[("host", "10001")], "Host")
    assert set(second.anonymous_name_mapping) == {f"host_10001_x{i}" for i in range(20)}
    guest_sbt = _sbt_param(dirs[("guest", "9999")], "Guest")
    sites = {node.sitename for tree in guest_sbt.trees_ for node in tree.tree_}
    assert sites == {"guest:9999", "host:10000", "host:10001"}
    for tree, second_tree in zip(guest_sbt.trees_, second.trees_, strict=True):
        owned = {node.id for node in tree.tree_ if node.sitename == "host:10001"}
        assert set(second_tree.split_maskdict) == owned
    assert json.loads(read_pipeline(dirs[("host", "10001")]).roles)["host"] == ["10000", "10001"]


def test_secureboost_rejects_lr_only_options() -> None:
    with pytest.raises(ValueError, match="LR"):
        ModelSpec(algorithm="hetero_secureboost", checkpoints=1)
    with pytest.raises(ValueError, match="LR"):
        ModelSpec(algorithm="hetero_secureboost", target_bytes=1024)


def test_homo_models_hold_their_buffers_where_fate_puts_them(tmp_path: Path) -> None:
    written = write_federation(
        {"9999": tmp_path / "9999", "10000": tmp_path / "10000"}, ModelSpec(algorithm="homo_secureboost")
    )
    host = read_define_meta(written["host", "10000"])
    assert host["component_define"]["homo_secureboost_0"] == {"module_name": "HomoSecureBoost"}
    assert host["model_proto"]["homo_secureboost_0"]["model"] == {  # a host uses the "Guest" keys too
        "HomoSecureBoostingTreeGuestMeta": "BoostingTreeModelMeta",
        "HomoSecureBoostingTreeGuestParam": "BoostingTreeModelParam",
    }
    assert "homo_secureboost_0" not in read_define_meta(written["arbiter", "10000"])["model_proto"]
    guest_param = written["guest", "9999"] / "variables/data/homo_secureboost_0/model/HomoSecureBoostingTreeGuestParam"
    host_param = written["host", "10000"] / "variables/data/homo_secureboost_0/model/HomoSecureBoostingTreeGuestParam"
    guest = _parse(guest_param, boosting_tree_model_param_pb2.BoostingTreeModelParam)
    host_trees = _parse(host_param, boosting_tree_model_param_pb2.BoostingTreeModelParam).trees_
    assert [[n.bid for n in t.tree_] for t in guest.trees_] == [[n.bid for n in t.tree_] for t in host_trees]
    assert {n.sitename for t in guest.trees_ for n in t.tree_} == {"guest"}

    nn = write_party_model(tmp_path / "nn", ModelSpec(algorithm="homo_nn"), "arbiter", 10000)
    server = _parse(nn / "variables/data/homo_nn_0/model/HomoNNParam", homo_nn_model_param_pb2.HomoNNParam)
    assert (server.epoch_idx, server.best_epoch) == (-1, -1) and server.model_bytes  # FATE's "empty" export


def test_one_vs_rest_homo_lr_keeps_its_class_models_aside(tmp_path: Path) -> None:
    version = write_party_model(tmp_path, ModelSpec(algorithm="homo_lr", num_classes=3), "guest", 9999)
    model = version / "variables/data/homo_lr_0/model"
    assert _parse(model / "HomoLogisticRegressionMeta", lr_model_meta_pb2.LRModelMeta).need_one_vs_rest
    param = _parse_param(model / "HomoLogisticRegressionParam")
    assert not param.weight and param.intercept == 0.0
    assert list(param.one_vs_rest_result.one_vs_rest_classes) == ["0", "1", "2"]
    assert [len(m.weight) for m in param.one_vs_rest_result.completed_models] == [30, 30, 30]
