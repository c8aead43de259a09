"""FATE's ``-c`` conf files and option strings, turned into typed requests: one schema per kind of conf.

Every builder checks its required keys in one go and raises FATE's "required parameters are
missing" error naming them all (:mod:`client.conf_reader`). Party ids may be ints or strings in a
conf; requests always carry strings. Errors name the conf file and the dotted key, and never echo a
Python repr.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic.dataclasses import dataclass as section

from client.conf_reader import FATE_CONF, Flag, RoleMap, Text, Texts, failure, is_text, json_type
from client.conf_reader import Conf as Conf
from client.conf_reader import parse_json as parse_json
from client.conf_reader import read_conf as read_conf
from client.conf_reader import read_text as read_text
from fate_registry.errors import Retcode
from fate_registry.v1 import common_pb2 as common
from fate_registry.v1 import registry_pb2 as pb

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # a step index travels as a protobuf int64


@section(frozen=True, kw_only=True, config=FATE_CONF)
class PartyRef:
    """``{"role": ..., "party_id": ...}``."""

    role: Text
    party_id: Text

    def proto(self) -> common.Party:
        return common.Party(role=self.role, party_id=self.party_id)


@section(frozen=True, kw_only=True, config=FATE_CONF)
class ModelConf:
    """A single-party conf: the party model it names (:data:`MODEL_KEYS`)."""

    role: Text
    party_id: Text
    model_id: Text
    model_version: Text

    def ref(self) -> common.PartyModelRef:
        return common.PartyModelRef(
            role=self.role, party_id=self.party_id, model_id=self.model_id, model_version=self.model_version
        )


MODEL_KEYS = tuple(key.name for key in dataclasses.fields(ModelConf))


def _roles(roles: RoleMap) -> dict[str, common.RoleParties]:
    return {role: common.RoleParties(party_ids=parties) for role, parties in roles.items()}


# Single-party confs ------------------------------------------------------------------------------


@section(frozen=True, kw_only=True, config=FATE_CONF)
class ForceConf(ModelConf):
    """A conf that may replace what is there (``force_update``)."""

    force_update: Flag = False


@section(frozen=True, kw_only=True, config=FATE_CONF)
class StoreConf(ForceConf):
    """``flow model export --to-database``; ``stored``: every entry of the archive stored, not deflated."""

    stored: Flag = False


@section(frozen=True, kw_only=True, config=FATE_CONF)
class RestoreConf(ForceConf):
    """``flow model import --from-database``; ``sha256`` is the archive's expected hash."""

    sha256: Text = ""


@section(frozen=True, kw_only=True, config=FATE_CONF)
class ImportConf(RestoreConf):
    """``flow model import``: ``file`` is an archive on this machine."""

    file: Text = ""


@section(frozen=True, kw_only=True, config=FATE_CONF)
class ExportConf(ModelConf):
    """``flow model export``: ``output_path`` is the directory that receives the archive; ``stored`` as in a store."""

    output_path: Text
    stored: Flag = False


@section(frozen=True, kw_only=True, config=FATE_CONF)
class HomoConvertConf(ModelConf):
    """``flow model homo-convert``; ``framework_name`` is the framework to convert to (default: the model's)."""

    framework_name: Text = ""


@section(frozen=True, kw_only=True, config=FATE_CONF)
class HomoDeployConf(HomoConvertConf):
    """``flow model homo-deploy``; ``deployment_parameters`` are the deployment type's (KServe's)."""

    service_id: Text
    component_name: Text
    deployment_type: Text
    deployment_parameters: dict[str, Any]


@dataclass(frozen=True)
class ImportSpec:
    """``flow model import -c``: an archive on this machine and where it goes."""

    file: Path
    target: common.PartyModelRef
    force_update: bool
    sha256: str


@dataclass(frozen=True)
class ExportSpec:
    """``flow model export -c``: which party model, and the directory that receives the archive."""

    model: common.PartyModelRef
    output_dir: Path
    stored: bool


def import_spec(conf: Conf) -> ImportSpec:
    """What ``flow model import`` uploads: the archive file (which must exist) and the version it holds."""
    spec = conf.read(ImportConf)
    if not spec.file:
        raise failure(
            "Import model failed. Please specify the valid model file path and try again.", Retcode.EXCEPTION_ERROR
        )
    file = conf.file(
        spec.file,
        "Import model failed. The file is obtained from the fate flow client machine, "
        "but it does not exist, please check the path: ",
    )
    return ImportSpec(file, spec.ref(), spec.force_update, spec.sha256)


def export_spec(conf: Conf) -> ExportSpec:
    # FATE's CLI makes output_path absolute against the current directory, and so do we.
    """What ``flow model export`` downloads, and the absolute directory it writes to."""
    spec = conf.read(ExportConf)
    return ExportSpec(spec.ref(), Path(spec.output_path).expanduser().absolute(), spec.stored)


def store_request(conf: Conf) -> pb.StoreModelRequest:
    """The request of ``flow model export --to-database``: copy a version into its party's model store."""
    spec = conf.read(StoreConf)
    return pb.StoreModelRequest(model=spec.ref(), force_update=spec.force_update, stored=spec.stored)


def restore_request(conf: Conf) -> pb.RestoreModelRequest:
    """The request of ``flow model import --from-database``: bring a version back from the model store."""
    spec = conf.read(RestoreConf)
    return pb.RestoreModelRequest(model=spec.ref(), force_update=spec.force_update, sha256=spec.sha256)


def homo_convert_request(conf: Conf) -> pb.HomoConvertModelRequest:
    """The request of ``flow model homo-convert``: a version and the framework to convert it to."""
    spec = conf.read(HomoConvertConf)
    return pb.HomoConvertModelRequest(model=spec.ref(), framework_name=spec.framework_name)


def homo_deploy_request(conf: Conf) -> pb.HomoDeployModelRequest:
    """FATE's CLI reads ``deployment_parameters.config_file`` (a kubeconfig) into ``config_file_content``."""
    spec = conf.read(HomoDeployConf)
    parameters = dict(spec.deployment_parameters)
    config_file = parameters.pop("config_file", None)
    if config_file:
        if not is_text(config_file):
            raise failure(f"deployment_parameters.config_file must be a path, got {json_type(config_file)}")
        kubeconfig = conf.file(
            str(config_file), "the kubeconfig named by deployment_parameters.config_file is missing: "
        )
        parameters["config_file_content"] = read_text(kubeconfig, "the kubeconfig file")
    return pb.HomoDeployModelRequest(
        model=spec.ref(),
        component_name=spec.component_name,
        service_id=spec.service_id,
        deployment_type=spec.deployment_type,
        deployment_parameters_json=json.dumps(parameters),
        framework_name=spec.framework_name,
    )


# Multi-party confs -------------------------------------------------------------------------------


@section(frozen=True, kw_only=True, config=FATE_CONF)
class NamedModel:
    """``job_parameters`` of load and bind: the model published."""

    model_id: Text
    model_version: Text


@section(frozen=True, kw_only=True, config=FATE_CONF)
class LoadParameters(NamedModel):
    """``job_parameters`` of a load conf: FATE's keys, accepted and not used by the registry."""

    load_type: Text = ""
    file_path: Text = ""
    use_transfer_url_on_serving: Flag = False


@section(frozen=True, kw_only=True, config=FATE_CONF)
class LoadConf:
    """``flow model load -c``."""

    initiator: PartyRef
    role: RoleMap
    job_parameters: LoadParameters


@section(frozen=True, kw_only=True, config=FATE_CONF)
class BindService:
    """What every bind names: an empty ``service_id`` is left for the registry to refuse, as FATE does."""

    service_id: Text = ""
    servings: Texts = field(default_factory=list)


@section(frozen=True, kw_only=True, config=FATE_CONF)
class BindConf(BindService):
    """``flow model bind -c``."""

    initiator: PartyRef
    role: RoleMap
    job_parameters: NamedModel


@section(frozen=True, kw_only=True, config=FATE_CONF)
class JobModel:
    """``job_parameters`` of ``bind -j``: the model is the job's, unless named."""

    model_id: Text = ""
    model_version: Text = ""


@section(frozen=True, kw_only=True, config=FATE_CONF)
class BindByJobConf(BindService):
    """``flow model bind -c -j``: the registry looks the deployed model up, so the federation is optional."""

    initiator: PartyRef | None = None
    role: RoleMap = field(default_factory=dict)
    job_parameters: JobModel = JobModel()


def load_request(conf: Conf | None, job_id: str) -> pb.LoadModelRequest:
    """``flow model load``: exactly one of ``-c`` and ``-j``, as FATE's CLI insists."""
    if conf is None and not job_id:
        raise failure(
            "Load model failed. No arguments received, please provide one of arguments from job id and conf path.",
            Retcode.EXCEPTION_ERROR,
        )
    if conf is not None and job_id:
        raise failure(
            "Load model failed. Please do not provide job id and conf path at the same time.", Retcode.EXCEPTION_ERROR
        )
    if conf is None:
        return pb.LoadModelRequest(job_id=job_id)
    spec = conf.read(LoadConf)
    parameters = spec.job_parameters
    return pb.LoadModelRequest(
        initiator=spec.initiator.proto(),
        role=_roles(spec.role),
        model_id=parameters.model_id,
        model_version=parameters.model_version,
        load_type=parameters.load_type,
        file_path=parameters.file_path,
        use_transfer_url_on_serving=parameters.use_transfer_url_on_serving,
    )


def bind_request(conf: Conf, job_id: str) -> pb.BindModelRequest:
    """The request of ``flow model bind``, from the conf, or from the job ``job_id`` names when given."""
    spec: BindConf | BindByJobConf = conf.read(BindByJobConf) if job_id else conf.read(BindConf)
    return pb.BindModelRequest(
        initiator=spec.initiator.proto() if spec.initiator else None,
        role=_roles(spec.role),
        model_id=spec.job_parameters.model_id,
        model_version=spec.job_parameters.model_version,
        job_id=job_id,
        service_id=spec.service_id,
        servings=spec.servings,
    )


@section(frozen=True, kw_only=True, config=FATE_CONF)
class MigrateConf:
    """``flow model migrate -c``; ``job_parameters`` (FATE's federated_mode) is accepted and not needed."""

    migrate_initiator: PartyRef
    role: RoleMap
    migrate_role: RoleMap
    model_id: Text
    model_version: Text
    execute_party: RoleMap
    unify_model_version: Text = ""


def migrate_request(conf: Conf) -> pb.MigrateModelRequest:
    """The request of ``flow model migrate``: the version, its old and new role maps and executing parties."""
    spec = conf.read(MigrateConf)
    return pb.MigrateModelRequest(
        model_id=spec.model_id,
        model_version=spec.model_version,
        role=_roles(spec.role),
        execute_party=_roles(spec.execute_party),
        migrate_initiator=spec.migrate_initiator.proto(),
        migrate_role=_roles(spec.migrate_role),
        unify_model_version=spec.unify_model_version,
    )


# Deploy's option strings -------------------------------------------------------------------------


def parse_cpn_list(text: str) -> list[str]:
    r"""``--cpn-list "a, b"`` or a ``--cpn-path`` file: names split at commas, brackets and quotes dropped.

    FATE's CLI means to refuse '/' and '\' but only refuses some such strings; we refuse them all.
    """
    if "/" in text or "\\" in text:
        raise failure("Component list string should not contain '/' or '\\'.")
    names = (name.strip().strip("\"'") for name in text.strip().strip("[]").split(","))
    return [name for name in names if name]


@dataclass(frozen=True)
class CheckpointChoice:
    """Deploy's ``--cpn-step-index cpn:123`` and ``--cpn-step-name cpn:name`` options."""

    step_index: dict[str, int]
    step_name: dict[str, str]


def _component_and_step(spec: str, option: str) -> tuple[str, str]:
    component, sep, step = spec.rpartition(":")
    if not sep or not component or not step:
        raise failure(f"{option} expects <component name>:<step>, got {json.dumps(spec)}")
    return component, step


def parse_checkpoints(step_index: Sequence[str], step_name: Sequence[str]) -> CheckpointChoice:
    """One checkpoint per component, split at the last ':' as FATE does."""
    indexes: dict[str, int] = {}
    names: dict[str, str] = {}
    for option, specs in (("--cpn-step-index", step_index), ("--cpn-step-name", step_name)):
        for spec in specs:
            component, step = _component_and_step(spec, option)
            if component in indexes or component in names:
                raise failure(f"Duplicated component name: {component}")
            if option == "--cpn-step-name":
                names[component] = step
            elif step.lstrip("-").isdigit() and INT64_MIN <= int(step) <= INT64_MAX:
                indexes[component] = int(step)
            else:
                raise failure(f"--cpn-step-index expects a 64-bit integer step index for {component}, got {step}")
    return CheckpointChoice(indexes, names)


def deploy_request(
    model_id: str,
    model_version: str,
    cpn_list: str | None = None,
    cpn_path: Path | None = None,
    dsl_path: Path | None = None,
    step_index: Sequence[str] = (),
    step_name: Sequence[str] = (),
) -> pb.DeployModelRequest:
    """``flow model deploy``: a component list (inline or from a file) or a predict DSL file, and checkpoints."""
    if cpn_path is not None:
        cpn_list = read_text(cpn_path, "the component list file")
    predict_dsl = ""
    if dsl_path is not None:
        predict_dsl = read_text(dsl_path, "the predict DSL file")
        parse_json(predict_dsl, f"the predict DSL file {dsl_path}")
    checkpoints = parse_checkpoints(step_index, step_name)
    return pb.DeployModelRequest(
        model_id=model_id,
        model_version=model_version,
        cpn_list=parse_cpn_list(cpn_list) if cpn_list else [],
        predict_dsl_json=predict_dsl,
        cpn_step_index=checkpoints.step_index,
        cpn_step_name=checkpoints.step_name,
    )
