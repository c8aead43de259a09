"""The ``flow`` commands' handlers.

Each builds its request from the options and conf, calls the registry and shapes FATE's JSON answer. The command table
and options are :mod:`client.cli`'s.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from client import confs, render, settings
from client.render import Answer
from client.sdk import RegistryClient
from fate_registry.errors import Reason, RegistryError, Retcode
from fate_registry.v1 import common_pb2 as common
from fate_registry.v1 import registry_pb2 as pb

if TYPE_CHECKING:
    from tqdm import tqdm

Handler = Callable[[argparse.Namespace], Answer]
"""Runs one command with its parsed options; returns the JSON answer to print."""


def _connect(args: argparse.Namespace) -> RegistryClient:
    chosen = settings.resolve(args.address)
    return RegistryClient(chosen.address, timeout=chosen.timeout, transfer=chosen.transfer, tls=chosen.tls)


class ProgressBar:
    """A transfer's progress bar: bytes and rate, and once the total is known, percentage and ETA."""

    def __init__(self, bar: tqdm[NoReturn]) -> None:
        self._bar = bar

    def expect(self, total: int) -> None:
        """Set the total before the first byte (an export learns it from the stream's header)."""
        self._bar.reset(total=total)

    def advance(self, size: int) -> None:
        """Count ``size`` more bytes.

        An export's total leaves out the archive's zip headers and manifest: the total grows to what has arrived rather
        than show more than 100 %.
        """
        total = self._bar.total
        if total is not None and self._bar.n + size > total:
            self._bar.total = self._bar.n + size
        self._bar.update(size)


@contextlib.contextmanager
def progress_bar(total: int | None, label: str) -> Iterator[ProgressBar | None]:
    """A progress bar on stderr when it is a terminal; nothing when output is piped or logged."""
    if not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm  # here, not at the top: a piped flow does not pay its import at start-up

    with tqdm(total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr) as bar:
        yield ProgressBar(bar)


def _model_ref(args: argparse.Namespace) -> common.PartyModelRef:
    return common.PartyModelRef(
        role=args.role, party_id=args.party_id, model_id=args.model_id, model_version=args.model_version
    )


# Each handler builds its request, calls the registry and shapes FATE's answer ------------------


def load(args: argparse.Namespace) -> Answer:
    """``flow model load``: load a version into every party's FATE-Serving, all or nothing."""
    request = confs.load_request(confs.read_conf(args.conf_path) if args.conf_path else None, args.job_id or "")
    with _connect(args) as client:
        return render.load_answer(client.load_model(request))


def bind(args: argparse.Namespace) -> Answer:
    """``flow model bind``: bind a loaded version to a service id."""
    request = confs.bind_request(confs.read_conf(args.conf_path), args.job_id or "")
    with _connect(args) as client:
        return render.bind_answer(client.bind_model(request))


def import_model(args: argparse.Namespace) -> Answer:
    """``flow model import``: upload an archive, or with ``--from-database`` restore from the model store."""
    conf = confs.read_conf(args.conf_path)
    if args.from_database:
        request = confs.restore_request(conf)
        with _connect(args) as client:
            return render.import_answer(client.restore_model(request).result)
    spec = confs.import_spec(conf)
    total = spec.file.stat().st_size if spec.file.is_file() else None
    with _connect(args) as client, progress_bar(total, "import") as bar:
        response = client.import_model(
            spec.file, spec.target, spec.force_update, spec.sha256, bar.advance if bar else None
        )
    return render.import_answer(response.result)


def export_model(args: argparse.Namespace) -> Answer:
    """``flow model export``: download an archive, or with ``--to-database`` store into the model store."""
    conf = confs.read_conf(args.conf_path)
    if args.to_database:
        request = confs.store_request(conf)
        request.stored |= args.stored
        with _connect(args) as client:
            return render.store_answer(client.store_model(request))
    spec = confs.export_spec(conf)
    with _connect(args) as client, progress_bar(None, "export") as bar:
        result = client.export_model(
            spec.model,
            spec.output_dir,
            stored=spec.stored or args.stored,
            progress=bar.advance if bar else None,
            expected_size=bar.expect if bar else None,
        )
    return render.export_answer(result)


def migrate(args: argparse.Namespace) -> Answer:
    """``flow model migrate``: rewrite a version for new party ids, one archive per party."""
    request = confs.migrate_request(confs.read_conf(args.conf_path))
    with _connect(args) as client:
        return render.migrate_answer(client.migrate_model(request))


def tag_list(args: argparse.Namespace) -> Answer:
    """``flow model tag-list``: every tag of the model version a job id names."""
    with _connect(args) as client:
        return render.tag_list_answer(client.all_model_tags(args.job_id))


def tag_model(args: argparse.Namespace) -> Answer:
    """``flow model tag-model``: add a tag to the model a job id names, or with ``--remove`` take it off."""
    with _connect(args) as client:
        if args.remove:
            message = client.remove_model_tag(
                pb.RemoveModelTagRequest(job_id=args.job_id, tag_name=args.tag_name)
            ).retmsg
        else:
            message = client.add_model_tag(pb.AddModelTagRequest(job_id=args.job_id, tag_name=args.tag_name)).retmsg
    return render.envelope(retmsg=message)


def deploy(args: argparse.Namespace) -> Answer:
    """``flow model deploy``: make a child version of chosen components on every party, all or nothing."""
    request = confs.deploy_request(
        args.model_id,
        args.model_version,
        cpn_list=args.cpn_list,
        cpn_path=args.cpn_path,
        dsl_path=args.dsl_path,
        step_index=args.cpn_step_index,
        step_name=args.cpn_step_name,
    )
    with _connect(args) as client:
        return render.deploy_answer(client.deploy_model(request))


def get_predict(args: argparse.Namespace, kind: str) -> Answer:
    """get-predict-dsl / get-predict-conf: FATE writes ``<output_path>/predict_<kind>_<timestamp>.json``."""
    with _connect(args) as client:
        if kind == "dsl":
            request = pb.GetPredictDslRequest(model_id=args.model_id, model_version=args.model_version)
            text = client.get_predict_dsl(request).predict_dsl_json
        else:
            conf_request = pb.GetPredictConfRequest(model_id=args.model_id, model_version=args.model_version)
            text = client.get_predict_conf(conf_request).predict_conf_json
    content = confs.parse_json(text, f"the predict {kind} the registry sent")
    path = Path(args.output_path).expanduser().absolute() / (
        f"predict_{kind}_{datetime.datetime.now().strftime('%Y%m%d%H%M%S')}.json"
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content, indent=4, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as exc:
        raise RegistryError(Reason.INVALID_ARGUMENT, f"cannot write {path}: {exc.strerror or exc}") from None
    return render.predict_file_answer(kind, path)


def get_model_info(args: argparse.Namespace) -> Answer:
    """``flow model get-model-info``: the catalog's rows of the versions that match, one per party."""
    request = pb.GetModelInfoRequest(
        model_id=args.model_id or "",
        model_version=args.model_version,
        role=args.role or "",
        party_id=args.party_id or "",
        detail=args.detail,
    )
    with _connect(args) as client:
        return render.model_info_answer(client.get_model_info(request), detail=args.detail)


def homo_convert(args: argparse.Namespace) -> Answer:
    """``flow model homo-convert``: convert a homo model's components for a common framework."""
    request = confs.homo_convert_request(confs.read_conf(args.conf_path))
    with _connect(args) as client:
        return render.homo_convert_answer(client.homo_convert_model(request))


def homo_deploy(args: argparse.Namespace) -> Answer:
    """``flow model homo-deploy``: serve a converted homo model on Kubernetes (KServe or KFServing)."""
    request = confs.homo_deploy_request(confs.read_conf(args.conf_path))
    with _connect(args) as client:
        return render.homo_deploy_answer(client.homo_deploy_model(request))


def unload(args: argparse.Namespace) -> Answer:
    """``flow model unload``: unload a version from every party's FATE-Serving."""
    request = pb.UnloadModelRequest(model_id=args.model_id, model_version=args.model_version)
    with _connect(args) as client:
        return render.party_results_answer(client.unload_model(request))


def unbind(args: argparse.Namespace) -> Answer:
    """``flow model unbind``: unbind service ids from a version on every party's FATE-Serving."""
    request = pb.UnbindModelRequest(
        model_id=args.model_id, model_version=args.model_version, service_ids=args.service_id
    )
    with _connect(args) as client:
        return render.party_results_answer(client.unbind_model(request))


def delete(args: argparse.Namespace) -> Answer:
    """``flow model delete``: delete a party's version, with ``--from-store`` its stored copy too."""
    request = pb.DeleteModelRequest(model=_model_ref(args), delete_from_store=args.from_store)
    with _connect(args) as client:
        return render.delete_answer(client.delete_model(request))


def list_versions(args: argparse.Namespace) -> Answer:
    """``flow model list-versions``: a page of the catalog's versions of a model."""
    request = pb.ListModelVersionsRequest(model_id=args.model_id, page_size=args.page_size, page_token=args.page_token)
    with _connect(args) as client:
        return render.versions_answer(client.list_model_versions(request))


def checkpoint_list(args: argparse.Namespace) -> Answer:
    """``flow checkpoint list``: the checkpoints of a component of a party's version."""
    request = pb.ListCheckpointsRequest(model=_model_ref(args), component_name=args.component_name)
    with _connect(args) as client:
        return render.checkpoint_list_answer(client.list_checkpoints(request))


def checkpoint_get(args: argparse.Namespace) -> Answer:
    """``flow checkpoint get``: one checkpoint of a component, by step index or step name."""
    request = pb.GetCheckpointRequest(model=_model_ref(args), component_name=args.component_name)
    if args.step_index is not None:
        request.step_index = args.step_index
    else:
        request.step_name = args.step_name
    with _connect(args) as client:
        return render.checkpoint_answer(client.get_checkpoint(request))


def operation_list(args: argparse.Namespace) -> Answer:
    """``flow operation list``: a page of the operation log, filtered by model, version and kind."""
    request = pb.ListOperationsRequest(
        model_id=args.model_id or "",
        model_version=args.model_version or "",
        operation=args.operation or "",
        page_size=args.page_size,
        page_token=args.page_token,
    )
    with _connect(args) as client:
        return render.operations_answer(client.list_operations(request))


def init(args: argparse.Namespace) -> Answer:
    """FATE's ``flow init``: remember the coordinator's ip and port, or a service conf to read it from."""
    if args.reset:
        settings.reset()
        return render.envelope(
            retmsg="Fate Flow CLI has been reset successfully. "
            "Please do initialization again before you using flow CLI v2."
        )
    if args.server_conf_path:
        conf_path = args.server_conf_path.expanduser().absolute()
        saved: dict[str, object] = {"server_conf_path": str(conf_path)}
        address = settings.service_conf_address(conf_path)
    elif args.ip and args.port:
        saved = {"ip": args.ip, "port": args.port}
        address = settings.join_address(args.ip, args.port)
    else:
        return render.envelope(
            int(Retcode.EXCEPTION_ERROR),
            "Fate Flow CLI initialization failed. "
            "Please provides server configuration file path or server http ip address and port information.",
        )
    tls = _init_tls(args)
    if tls:
        saved["tls"] = tls
    path = settings.save(saved)
    data: dict[str, object] = {"address": address, "settings": str(path)}
    if tls:
        data["tls"] = tls
    return render.envelope(retmsg="Fate Flow CLI has been initialized successfully.", data=data)


def _init_tls(args: argparse.Namespace) -> dict[str, str]:
    """The TLS files given to ``flow init``, as absolute paths, checked to be there; {} when none is."""
    keys = settings.TLS_FILES
    given = {key: str(path.expanduser().absolute()) for key in keys if (path := getattr(args, f"tls_{key}"))}
    settings.tls_conf([given.get(key) for key in keys], names=[f"--tls-{key}" for key in keys])
    for key, path in given.items():
        if not Path(path).is_file():
            raise RegistryError(
                Reason.INVALID_ARGUMENT, f"--tls-{key}: no such file: {path}", retcode=Retcode.EXCEPTION_ERROR
            )
    return given
