"""FATE's ``-c`` conf files and option strings, turned into typed requests.

Every builder checks its required keys in one go and raises FATE's "required parameters are
missing" error naming them all. Party ids may be ints or strings in a conf; requests always carry
strings. Errors name the conf file and the dotted key, and never echo a Python repr.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fate_registry.errors import Reason, RegistryError, Retcode, missing_keys
from fate_registry.v1 import common_pb2 as common
from fate_registry.v1 import registry_pb2 as pb

MODEL_KEYS = ("role", "party_id", "model_id", "model_version")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # a step index travels as a protobuf int64


def _failure(message: str, retcode: int = Retcode.ARGUMENT_ERROR) -> RegistryError:
    return RegistryError(Reason.INVALID_ARGUMENT, message, retcode=retcode)


def _json_type(value: Any) -> str:
    """How a JSON reader would name ``value``'s type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def parse_json(text: str, what: str) -> Any:
    """``text`` parsed, or a retcode-100 error naming ``what`` and the line and column of the fault."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _failure(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}", Retcode.EXCEPTION_ERROR
        ) from None


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of ``path``, or a retcode-100 error naming it."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _failure(f"{what} {path} does not exist", Retcode.EXCEPTION_ERROR) from None
    except UnicodeDecodeError:
        raise _failure(f"{what} {path} is not UTF-8 text", Retcode.EXCEPTION_ERROR) from None
    except OSError as exc:
        raise _failure(f"cannot read {what} {path}: {exc.strerror or exc}", Retcode.EXCEPTION_ERROR) from None


@dataclass(frozen=True)
class Conf:
    """A JSON object of a conf file (the whole file, or one nested object of it).

    ``path`` is the file (None for a conf built in memory); ``prefix`` is the dotted key of a nested
    object, so that messages name ``job_parameters.model_id`` rather than ``model_id``.
    """

    data: Mapping[str, Any]
    path: Path | None = None
    prefix: str = ""

    def _key(self, key: str) -> str:
        return self.prefix + key

    def _invalid(self, key: str, expected: str) -> RegistryError:
        where = f"{self.path}: " if self.path else ""
        value = self.data.get(key)
        shown = f" ({json.dumps(value)})" if isinstance(value, (int, float)) else ""  # no secret, and says most
        return _failure(f"{where}{self._key(key)} must be {expected}, got {_json_type(value)}{shown}")

    def require(self, *keys: str) -> None:
        """FATE's check: every key present and not null, or one error naming every missing key."""
        missing = [self._key(key) for key in keys if self.data.get(key) is None]
        if missing:
            raise missing_keys(missing)

    def text(self, key: str) -> str:
        """A string value; ints (party ids, versions) become strings; absent or null is ``""``."""
        value = self.data.get(key)
        if value is None:
            return ""
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise self._invalid(key, "a string or a whole number")
        return str(value)

    def flag(self, key: str) -> bool:
        """A boolean; FATE's form encoding 0/1 is accepted too; absent or null is false."""
        value = self.data.get(key)
        if value is None:
            return False
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise self._invalid(key, "true or false")

    def section(self, key: str) -> Conf:
        """A nested object; absent or null is an empty one."""
        value = self.data.get(key)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise self._invalid(key, "an object")
        return Conf(value, self.path, f"{self._key(key)}.")

    def texts(self, key: str) -> list[str]:
        """A list of strings (or ints); absent or null is empty."""
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, (str, int)) for v in value):
            raise self._invalid(key, "a list of strings")
        return [str(v) for v in value]

    def party(self, key: str) -> common.Party:
        """``{"role": ..., "party_id": ...}``."""
        party = self.section(key)
        party.require("role", "party_id")
        return common.Party(role=party.text("role"), party_id=party.text("party_id"))

    def roles(self, key: str) -> dict[str, common.RoleParties]:
        """A role map ``{"guest": [9999], "host": ["10000"]}``, party ids as strings."""
        roles = self.section(key)
        return {role: common.RoleParties(party_ids=roles.texts(role)) for role in roles.data}

    def file(self, key: str, missing: str) -> Path:
        """An existing file named by ``key``; ``missing`` starts the message when there is none.

        A relative path is tried against the current directory first (what a user at a shell
        means), then against the conf file's directory (so a conf kept next to its archive works
        from anywhere). FATE resolves it against its own project directory, which a client on
        another machine does not have.
        """
        raw = Path(self.text(key)).expanduser()
        candidates = [raw] if raw.is_absolute() else [Path.cwd() / raw]
        if self.path is not None and not raw.is_absolute():
            candidates.append((self.path.parent / raw).absolute())
        for candidate in candidates:
            if candidate.exists():
                return candidate
        raise _failure(f"{missing}{' or '.join(str(c) for c in candidates)}", Retcode.EXCEPTION_ERROR)


def read_conf(path: Path) -> Conf:
    """The ``-c`` conf at ``path``: missing, unreadable or invalid files are retcode-100 errors naming it."""
    data = parse_json(read_text(path, "the conf file"), f"the conf file {path}")
    if not isinstance(data, dict):
        raise _failure(f"the conf file {path} must hold a JSON object, got {_json_type(data)}", Retcode.EXCEPTION_ERROR)
    return Conf(data, path)


def model_ref(conf: Conf, *required: str) -> common.PartyModelRef:
    """The party model a single-party conf names; checks :data:`MODEL_KEYS` and ``required`` together."""
    conf.require(*MODEL_KEYS, *required)
    return common.PartyModelRef(
        role=conf.text("role"),
        party_id=conf.text("party_id"),
        model_id=conf.text("model_id"),
        model_version=conf.text("model_version"),
    )


# Single-party confs ------------------------------------------------------------------------------


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


def import_spec(conf: Conf) -> ImportSpec:
    target = model_ref(conf)
    if not conf.text("file"):
        raise _failure(
            "Import model failed. Please specify the valid model file path and try again.", Retcode.EXCEPTION_ERROR
        )
    file = conf.file(
        "file",
        "Import model failed. The file is obtained from the fate flow client machine, "
        "but it does not exist, please check the path: ",
    )
    return ImportSpec(file, target, conf.flag("force_update"), conf.text("sha256"))


def export_spec(conf: Conf) -> ExportSpec:
    # FATE's CLI makes output_path absolute against the current directory, and so do we.
    model = model_ref(conf, "output_path")
    return ExportSpec(model, Path(conf.text("output_path")).expanduser().absolute())


def store_request(conf: Conf) -> pb.StoreModelRequest:
    return pb.StoreModelRequest(model=model_ref(conf), force_update=conf.flag("force_update"))


def restore_request(conf: Conf) -> pb.RestoreModelRequest:
    return pb.RestoreModelRequest(
        model=model_ref(conf), force_update=conf.flag("force_update"), sha256=conf.text("sha256")
    )


def homo_convert_request(conf: Conf) -> pb.HomoConvertModelRequest:
    return pb.HomoConvertModelRequest(model=model_ref(conf), framework_name=conf.text("framework_name"))


def homo_deploy_request(conf: Conf) -> pb.HomoDeployModelRequest:
    """FATE's CLI reads ``deployment_parameters.config_file`` (a kubeconfig) into ``config_file_content``."""
    model = model_ref(conf, "service_id", "component_name", "deployment_type", "deployment_parameters")
    deployment = conf.section("deployment_parameters")
    parameters = dict(deployment.data)
    if parameters.pop("config_file", None):
        kubeconfig = deployment.file(
            "config_file", "the kubeconfig named by deployment_parameters.config_file is missing: "
        )
        parameters["config_file_content"] = read_text(kubeconfig, "the kubeconfig file")
    return pb.HomoDeployModelRequest(
        model=model,
        component_name=conf.text("component_name"),
        service_id=conf.text("service_id"),
        deployment_type=conf.text("deployment_type"),
        deployment_parameters_json=json.dumps(parameters),
        framework_name=conf.text("framework_name"),
    )


# Multi-party confs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Published:
    """What load and bind share: the federation and the model, from the conf or left to the job id."""

    initiator: common.Party | None
    role: dict[str, common.RoleParties]
    model_id: str
    model_version: str
    job_parameters: Conf


def _published(conf: Conf, job_id: str) -> _Published:
    """With a job id the registry looks the deployed model up, so the conf's federation is optional."""
    parameters = conf.section("job_parameters")
    if not job_id:
        conf.require("initiator", "role", "job_parameters")
        parameters.require("model_id", "model_version")
    return _Published(
        initiator=conf.party("initiator") if conf.data.get("initiator") is not None else None,
        role=conf.roles("role"),
        model_id=parameters.text("model_id"),
        model_version=parameters.text("model_version"),
        job_parameters=parameters,
    )


def load_request(conf: Conf | None, job_id: str) -> pb.LoadModelRequest:
    """``flow model load``: exactly one of ``-c`` and ``-j``, as FATE's CLI insists."""
    if conf is None and not job_id:
        raise _failure(
            "Load model failed. No arguments received, please provide one of arguments from job id and conf path.",
            Retcode.EXCEPTION_ERROR,
        )
    if conf is not None and job_id:
        raise _failure(
            "Load model failed. Please do not provide job id and conf path at the same time.", Retcode.EXCEPTION_ERROR
        )
    if conf is None:
        return pb.LoadModelRequest(job_id=job_id)
    published = _published(conf, "")
    parameters = published.job_parameters
    return pb.LoadModelRequest(
        initiator=published.initiator,
        role=published.role,
        model_id=published.model_id,
        model_version=published.model_version,
        load_type=parameters.text("load_type"),
        file_path=parameters.text("file_path"),
        use_transfer_url_on_serving=parameters.flag("use_transfer_url_on_serving"),
    )


def bind_request(conf: Conf, job_id: str) -> pb.BindModelRequest:
    """``flow model bind -c [-j]``: an empty ``service_id`` is left for the registry to refuse, as FATE does."""
    published = _published(conf, job_id)
    return pb.BindModelRequest(
        initiator=published.initiator,
        role=published.role,
        model_id=published.model_id,
        model_version=published.model_version,
        job_id=job_id,
        service_id=conf.text("service_id"),
        servings=conf.texts("servings"),
    )


def migrate_request(conf: Conf) -> pb.MigrateModelRequest:
    """``flow model migrate -c``; ``job_parameters`` (FATE's federated_mode) is accepted and not needed."""
    conf.require("migrate_initiator", "role", "migrate_role", "model_id", "model_version", "execute_party")
    return pb.MigrateModelRequest(
        model_id=conf.text("model_id"),
        model_version=conf.text("model_version"),
        role=conf.roles("role"),
        execute_party=conf.roles("execute_party"),
        migrate_initiator=conf.party("migrate_initiator"),
        migrate_role=conf.roles("migrate_role"),
        unify_model_version=conf.text("unify_model_version"),
    )


# Deploy's option strings -------------------------------------------------------------------------


def parse_cpn_list(text: str) -> list[str]:
    """``--cpn-list "a, b"`` or a ``--cpn-path`` file: names split at commas, brackets and quotes dropped.

    FATE's CLI means to refuse '/' and '\\' but only refuses some such strings; we refuse them all.
    """
    if "/" in text or "\\" in text:
        raise _failure("Component list string should not contain '/' or '\\'.")
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
        raise _failure(f"{option} expects <component name>:<step>, got {json.dumps(spec)}")
    return component, step


def parse_checkpoints(step_index: Sequence[str], step_name: Sequence[str]) -> CheckpointChoice:
    """One checkpoint per component, split at the last ':' as FATE does."""
    indexes: dict[str, int] = {}
    names: dict[str, str] = {}
    for option, specs in (("--cpn-step-index", step_index), ("--cpn-step-name", step_name)):
        for spec in specs:
            component, step = _component_and_step(spec, option)
            if component in indexes or component in names:
                raise _failure(f"Duplicated component name: {component}")
            if option == "--cpn-step-name":
                names[component] = step
            elif step.lstrip("-").isdigit() and INT64_MIN <= int(step) <= INT64_MAX:
                indexes[component] = int(step)
            else:
                raise _failure(f"--cpn-step-index expects a 64-bit integer step index for {component}, got {step}")
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
