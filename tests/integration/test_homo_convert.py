"""homo-convert through the real coordinator and agents: each converter's model, loaded in its own
framework, predicts on 1,000 rows what the federated model's buffers predict; bad input changes nothing."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import joblib
import lightgbm
import numpy as np
import pytest
import torch

from client.sdk import RegistryClient
from fate_registry.errors import Reason, RegistryError
from fate_registry.v1 import registry_pb2 as pb
from fate_registry.v1.common_pb2 import PartyModelRef
from tests import homo_reference as ref
from tests.conftest import GeneratedModel, generate_model
from tests.flow_cli import flow, write_conf
from tests.support.federation import LocalFederation

LR_TOLERANCE = 1e-6
NN_TOLERANCE = 1e-5


def _ref(model: GeneratedModel, role: str = "guest", party_id: str = "9999") -> PartyModelRef:
    return PartyModelRef(role=role, party_id=party_id, model_id=model.model_id, model_version=model.version)


def _imported(federation: LocalFederation, model: GeneratedModel, role: str = "guest", party_id: str = "9999") -> Path:
    with RegistryClient(federation.address) as client:
        client.import_model(model.archives[role, party_id], _ref(model, role, party_id))
    return federation.model_cache(party_id) / f"{role}#{party_id}#{model.model_id}" / model.version


def _convert(federation: LocalFederation, model: GeneratedModel, framework: str = "") -> pb.HomoConvertModelResponse:
    with RegistryClient(federation.address) as client:
        return client.homo_convert_model(pb.HomoConvertModelRequest(model=_ref(model), framework_name=framework))


def _buffers(model: GeneratedModel, component: str) -> Path:
    return model.version_dirs["guest", "9999"] / "variables/data" / component / "model"


def _files(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def _digest(federation: LocalFederation, model: GeneratedModel, role: str = "guest", party_id: str = "9999") -> str:
    with RegistryClient(federation.address) as client:
        request = pb.GetModelInfoRequest(
            model_id=model.model_id, model_version=model.version, role=role, party_id=party_id, detail=True
        )
        return str(client.get_model_info(request).models[0].manifest_digest)


def test_homo_lr_binary_to_sklearn(federation: LocalFederation, tmp_path: Path) -> None:
    model = generate_model(tmp_path, algorithm="homo_lr")
    version_dir = _imported(federation, model)
    before = _digest(federation, model)
    answer = _convert(federation, model)
    path = "variables/data/homo_lr_0/model/converted_model/sklearn.joblib"
    assert [(c.component_name, c.model_alias, c.framework_name, c.converted_model_path) for c in answer.components] == [
        ("homo_lr_0", "model", "sklearn", path)
    ]
    assert answer.manifest_digest == _digest(federation, model) != before

    converted = joblib.load(version_dir / path)
    x = ref.rows(30)
    scores = ref.lr_scores(_buffers(model, "homo_lr_0") / "HomoLogisticRegressionParam", x)[:, 0]
    assert list(converted.classes_) == [0, 1]
    assert np.abs(converted.decision_function(x) - scores).max() <= LR_TOLERANCE
    assert np.abs(converted.predict_proba(x)[:, 1] - ref.sigmoid(scores)).max() <= LR_TOLERANCE
    assert (converted.predict(x) == (scores > 0).astype(int)).all()


def test_one_vs_rest_homo_lr_keeps_every_class(federation: LocalFederation, tmp_path: Path) -> None:
    """FATE's converter makes this an all-zero binary model with classes [0, 1]; here it predicts."""
    model = generate_model(tmp_path, algorithm="homo_lr", num_classes=4)
    version_dir = _imported(federation, model)
    answer = _convert(federation, model, "scikit-learn")
    converted = joblib.load(version_dir / answer.components[0].converted_model_path)
    x = ref.rows(30)
    scores = ref.lr_scores(_buffers(model, "homo_lr_0") / "HomoLogisticRegressionParam", x)
    assert list(converted.classes_) == [0, 1, 2, 3]
    assert np.abs(converted.decision_function(x) - scores).max() <= LR_TOLERANCE
    assert np.abs(converted.predict_proba(x) - ref.lr_ovr_probabilities(scores)).max() <= LR_TOLERANCE
    assert (converted.predict(x) == scores.argmax(axis=1)).all()
    assert len(set(converted.predict(x))) == 4


def test_homo_nn_to_pytorch(federation: LocalFederation, tmp_path: Path) -> None:
    model = generate_model(tmp_path, algorithm="homo_nn")
    version_dir = _imported(federation, model)
    answer = _convert(federation, model, "torch")
    directory = version_dir / "variables/data/homo_nn_0/model/converted_model"
    assert answer.components[0].converted_model_path == "variables/data/homo_nn_0/model/converted_model/pytorch.pth"
    assert sorted(answer.converted_files) == sorted(
        f"variables/data/homo_nn_0/model/converted_model/{n}" for n in ("pytorch.pth", "pytorch_module.pt2")
    )
    fate_form = torch.load(directory / "pytorch.pth", weights_only=True)
    assert sorted(fate_form["model"]) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    assert fate_form["optimizer"]["param_groups"][0]["lr"] == 0.01

    network = torch.export.load(directory / "pytorch_module.pt2").module()
    x = ref.rows(30)
    with torch.no_grad():
        out = network(torch.tensor(x, dtype=torch.float32)).double().numpy()[:, 0]
    assert np.abs(out - ref.nn_output(_buffers(model, "homo_nn_0") / "HomoNNParam", x)).max() <= NN_TOLERANCE


@pytest.mark.parametrize("num_classes", [2, 3])
def test_homo_secureboost_to_lightgbm_with_its_init_score(
    federation: LocalFederation, tmp_path: Path, num_classes: int
) -> None:
    model = generate_model(tmp_path, algorithm="homo_secureboost", num_classes=num_classes)
    version_dir = _imported(federation, model)
    answer = _convert(federation, model)
    assert answer.components[0].converted_model_path.endswith("homo_secureboost_0/model/converted_model/lgb.txt")
    booster = lightgbm.Booster(model_file=str(version_dir / answer.components[0].converted_model_path))
    x = ref.rows(30)
    buffers = _buffers(model, "homo_secureboost_0")
    raw = ref.sbt_raw_scores(
        buffers / "HomoSecureBoostingTreeGuestMeta", buffers / "HomoSecureBoostingTreeGuestParam", x
    )
    predicted_raw = np.asarray(booster.predict(x, raw_score=True)).reshape(len(x), -1)
    assert np.abs(predicted_raw - raw).max() <= LR_TOLERANCE
    probabilities = ref.sigmoid(raw[:, 0]) if num_classes == 2 else ref.softmax(raw)
    assert np.abs(booster.predict(x) - probabilities).max() <= LR_TOLERANCE


def test_converted_files_are_in_the_manifest_and_go_out_with_exports(
    federation: LocalFederation, tmp_path: Path
) -> None:
    model = generate_model(tmp_path, algorithm="homo_secureboost")
    version_dir = _imported(federation, model)
    _convert(federation, model)
    (version_dir / "variables/data/homo_secureboost_0/model/converted_model/lgb.txt").unlink()
    (tmp_path / "out").mkdir()
    with RegistryClient(federation.address) as client:  # the export notices the file is gone: it was recorded
        with pytest.raises(RegistryError) as failed:
            client.export_model(_ref(model), tmp_path / "out")
        assert failed.value.reason is Reason.DATA_LOSS
        _convert(federation, model)  # converting again restores it
        exported = client.export_model(_ref(model), tmp_path / "out")
    with zipfile.ZipFile(exported.path) as zf:
        assert "variables/data/homo_secureboost_0/model/converted_model/lgb.txt" in zf.namelist()


def test_flow_cli_homo_convert(federation: LocalFederation, tmp_path: Path) -> None:
    model = generate_model(tmp_path, algorithm="homo_lr")
    _imported(federation, model)
    conf = {
        "model_id": model.model_id,
        "model_version": model.version,
        "role": "guest",
        "party_id": 9999,
        "framework_name": "sklearn",
    }
    code, answer = flow(federation, "model", "homo-convert", "-c", write_conf(tmp_path, "homo_convert.json", conf))
    assert code == 0, answer
    pmid = f"guest#9999#{model.model_id}"
    assert answer == {
        "retcode": 0,
        "retmsg": f"Conversion of homogeneous federated learning component(s) in model {pmid}:{model.version} "
        "completed. Use export or homo/deploy to download or deploy the converted model.",
        "data": [
            {
                "component_name": "homo_lr_0",
                "model_alias": "model",
                "converted_model_path": "variables/data/homo_lr_0/model/converted_model/sklearn.joblib",
            }
        ],
    }


@pytest.mark.parametrize(
    ("algorithm", "role", "party_id", "framework", "retcode", "message"),
    [
        ("hetero_lr", "guest", "9999", "", 100, "No component in model guest#9999#"),
        ("homo_nn", "arbiter", "10000", "", 100, "holds no trained weights"),
        ("homo_lr", "guest", "9999", "xgboost", 100, 'unknown framework_name "xgboost"'),
        ("homo_nn", "guest", "9999", "tf", 100, "TensorFlow/Keras is not supported"),
        ("homo_nn", "guest", "9999", "sklearn", 100, "can be converted."),
    ],
)
def test_bad_input_is_a_clear_error_and_changes_nothing(
    federation: LocalFederation,
    tmp_path: Path,
    algorithm: str,
    role: str,
    party_id: str,
    framework: str,
    retcode: int,
    message: str,
) -> None:
    model = generate_model(tmp_path, algorithm=algorithm)
    version_dir = _imported(federation, model, role, party_id)
    files, digest = _files(version_dir), _digest(federation, model, role, party_id)
    conf = {
        "model_id": model.model_id,
        "model_version": model.version,
        "role": role,
        "party_id": party_id,
        "framework_name": framework,
    }
    code, answer = flow(federation, "model", "homo-convert", "-c", write_conf(tmp_path, "homo_convert.json", conf))
    assert (code, answer["retcode"]) == (1, retcode), answer
    assert message in answer["retmsg"]
    assert _files(version_dir) == files
    assert _digest(federation, model, role, party_id) == digest
    assert not list(version_dir.rglob("converted_model"))


def test_with_enable_model_store_the_store_gets_the_converted_version(
    synced_federation: LocalFederation, tmp_path: Path
) -> None:
    """Otherwise the next load or export would replace the local version by the store's older copy."""
    fed = synced_federation
    model = generate_model(tmp_path, algorithm="homo_lr")
    version_dir = _imported(fed, model)
    answer = _convert(fed, model)
    converted = version_dir / answer.components[0].converted_model_path
    inode = version_dir.stat().st_ino
    (tmp_path / "a").mkdir()
    with RegistryClient(fed.address) as client:
        client.export_model(_ref(model), tmp_path / "a")
        assert version_dir.stat().st_ino == inode and converted.is_file()  # in step with the store: left alone
        client.delete_model(pb.DeleteModelRequest(model=_ref(model)))
        assert not version_dir.exists()
        client.export_model(_ref(model), tmp_path / "a")  # downloads the store's copy
    assert converted.is_file()
    assert _digest(fed, model) == answer.manifest_digest


def test_an_unknown_model_is_fates_retcode_100(federation: LocalFederation, tmp_path: Path) -> None:
    conf = {"model_id": "guest-9999#host-10000#model", "model_version": "1", "role": "guest", "party_id": 9999}
    code, answer = flow(federation, "model", "homo-convert", "-c", write_conf(tmp_path, "c.json", conf))
    assert (code, answer["retcode"]) == (1, 100), answer
    assert answer["retmsg"] == "Model guest#9999#guest-9999#host-10000#model 1 does not exist."
