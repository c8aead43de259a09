"""``flow``: FATE-Flow's model commands, options and JSON answers, against the registry.

Every command prints one JSON answer on stdout and exits 0 when its retcode is 0, else 1. Usage
errors (an unknown command, a missing required option) are argparse's: usage on stderr, exit 2
and no JSON, as FATE's click-based CLI does. Progress bars go to stderr, and only to a terminal.

Beyond FATE: ``flow model unload|unbind|delete|list-versions`` and ``flow operation list``, and a
global ``--address`` (also accepted after the command).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import json
import os
import shutil
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from client import confs, render, settings
from client.render import Answer
from client.sdk import RegistryClient
from fate_registry.errors import Reason, RegistryError, Retcode
from fate_registry.malloc import keep_heap_for_streams, limit_arenas
from fate_registry.v1 import common_pb2 as common
from fate_registry.v1 import registry_pb2 as pb

if TYPE_CHECKING:
    from tqdm import tqdm

ROLES = ("local", "guest", "arbiter", "host")
Handler = Callable[[argparse.Namespace], Answer]


def _connect(args: argparse.Namespace) -> RegistryClient:
    chosen = settings.resolve(args.address)
    return RegistryClient(chosen.address, timeout=chosen.timeout, transfer=chosen.transfer, tls=chosen.tls)


class _Bar:
    """A transfer's progress bar: bytes and rate, and once the total is known, percentage and ETA."""

    def __init__(self, bar: tqdm[NoReturn]) -> None:
        self._bar = bar

    def expect(self, total: int) -> None:
        """Set the total before the first byte (an export learns it from the stream's header)."""
        self._bar.reset(total=total)

    def advance(self, size: int) -> None:
        """Count ``size`` more bytes. An export's total leaves out the archive's zip headers and manifest:
        the total grows to what has arrived rather than show more than 100 %."""
        total = self._bar.total
        if total is not None and self._bar.n + size > total:
            self._bar.total = self._bar.n + size
        self._bar.update(size)


@contextlib.contextmanager
def _progress(total: int | None, label: str) -> Iterator[_Bar | None]:
    """A progress bar on stderr when it is a terminal; nothing when output is piped or logged."""
    if not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm  # here, not at the top: a piped flow does not pay its import at start-up

    with tqdm(total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr) as bar:
        yield _Bar(bar)


def _model_ref(args: argparse.Namespace) -> common.PartyModelRef:
    return common.PartyModelRef(
        role=args.role, party_id=args.party_id, model_id=args.model_id, model_version=args.model_version
    )


# Handlers: each builds its request, calls the registry and shapes FATE's answer ------------------


def _load(args: argparse.Namespace) -> Answer:
    request = confs.load_request(confs.read_conf(args.conf_path) if args.conf_path else None, args.job_id or "")
    with _connect(args) as client:
        return render.load_answer(client.load_model(request))


def _bind(args: argparse.Namespace) -> Answer:
    request = confs.bind_request(confs.read_conf(args.conf_path), args.job_id or "")
    with _connect(args) as client:
        return render.bind_answer(client.bind_model(request))


def _import(args: argparse.Namespace) -> Answer:
    conf = confs.read_conf(args.conf_path)
    if args.from_database:
        request = confs.restore_request(conf)
        with _connect(args) as client:
            return render.import_answer(client.restore_model(request).result)
    spec = confs.import_spec(conf)
    total = spec.file.stat().st_size if spec.file.is_file() else None
    with _connect(args) as client, _progress(total, "import") as bar:
        response = client.import_model(
            spec.file, spec.target, spec.force_update, spec.sha256, bar.advance if bar else None
        )
    return render.import_answer(response.result)


def _export(args: argparse.Namespace) -> Answer:
    conf = confs.read_conf(args.conf_path)
    if args.to_database:
        request = confs.store_request(conf)
        with _connect(args) as client:
            return render.store_answer(client.store_model(request))
    spec = confs.export_spec(conf)
    with _connect(args) as client, _progress(None, "export") as bar:
        result = client.export_model(
            spec.model,
            spec.output_dir,
            progress=bar.advance if bar else None,
            expected_size=bar.expect if bar else None,
        )
    return render.export_answer(result)


def _migrate(args: argparse.Namespace) -> Answer:
    request = confs.migrate_request(confs.read_conf(args.conf_path))
    with _connect(args) as client:
        return render.migrate_answer(client.migrate_model(request))


def _tag_list(args: argparse.Namespace) -> Answer:
    with _connect(args) as client:
        return render.tag_list_answer(client.all_model_tags(args.job_id))


def _tag_model(args: argparse.Namespace) -> Answer:
    with _connect(args) as client:
        if args.remove:
            message = client.remove_model_tag(
                pb.RemoveModelTagRequest(job_id=args.job_id, tag_name=args.tag_name)
            ).retmsg
        else:
            message = client.add_model_tag(pb.AddModelTagRequest(job_id=args.job_id, tag_name=args.tag_name)).retmsg
    return render.envelope(retmsg=message)


def _deploy(args: argparse.Namespace) -> Answer:
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


def _get_predict(args: argparse.Namespace, kind: str) -> Answer:
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


def _get_model_info(args: argparse.Namespace) -> Answer:
    request = pb.GetModelInfoRequest(
        model_id=args.model_id or "",
        model_version=args.model_version,
        role=args.role or "",
        party_id=args.party_id or "",
        detail=args.detail,
    )
    with _connect(args) as client:
        return render.model_info_answer(client.get_model_info(request), detail=args.detail)


def _homo_convert(args: argparse.Namespace) -> Answer:
    request = confs.homo_convert_request(confs.read_conf(args.conf_path))
    with _connect(args) as client:
        return render.homo_convert_answer(client.homo_convert_model(request))


def _homo_deploy(args: argparse.Namespace) -> Answer:
    request = confs.homo_deploy_request(confs.read_conf(args.conf_path))
    with _connect(args) as client:
        return render.homo_deploy_answer(client.homo_deploy_model(request))


def _unload(args: argparse.Namespace) -> Answer:
    request = pb.UnloadModelRequest(model_id=args.model_id, model_version=args.model_version)
    with _connect(args) as client:
        return render.party_results_answer(client.unload_model(request))


def _unbind(args: argparse.Namespace) -> Answer:
    request = pb.UnbindModelRequest(
        model_id=args.model_id, model_version=args.model_version, service_ids=args.service_id
    )
    with _connect(args) as client:
        return render.party_results_answer(client.unbind_model(request))


def _delete(args: argparse.Namespace) -> Answer:
    request = pb.DeleteModelRequest(model=_model_ref(args), delete_from_store=args.from_store)
    with _connect(args) as client:
        return render.delete_answer(client.delete_model(request))


def _list_versions(args: argparse.Namespace) -> Answer:
    request = pb.ListModelVersionsRequest(model_id=args.model_id, page_size=args.page_size, page_token=args.page_token)
    with _connect(args) as client:
        return render.versions_answer(client.list_model_versions(request))


def _checkpoint_list(args: argparse.Namespace) -> Answer:
    request = pb.ListCheckpointsRequest(model=_model_ref(args), component_name=args.component_name)
    with _connect(args) as client:
        return render.checkpoint_list_answer(client.list_checkpoints(request))


def _checkpoint_get(args: argparse.Namespace) -> Answer:
    request = pb.GetCheckpointRequest(model=_model_ref(args), component_name=args.component_name)
    if args.step_index is not None:
        request.step_index = args.step_index
    else:
        request.step_name = args.step_name
    with _connect(args) as client:
        return render.checkpoint_answer(client.get_checkpoint(request))


def _operation_list(args: argparse.Namespace) -> Answer:
    request = pb.ListOperationsRequest(
        model_id=args.model_id or "",
        model_version=args.model_version or "",
        operation=args.operation or "",
        page_size=args.page_size,
        page_token=args.page_token,
    )
    with _connect(args) as client:
        return render.operations_answer(client.list_operations(request))


def _init(args: argparse.Namespace) -> Answer:
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


# The parser ---------------------------------------------------------------------------------------


def _integer(bits: int) -> Callable[[str], int]:
    """An argparse type: an integer that fits the request's signed ``bits``-bit field."""
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected an integer from {low} to {high}, got {text}")
        return value

    parse.__name__ = f"int{bits}"  # argparse names the type in its messages
    return parse


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"expected a port number between 1 and 65535, got {text}")
    return int(text)


_PUBLISHED_KEYS = (
    "initiator.role",
    "initiator.party_id",
    "role",
    "job_parameters.model_id",
    "job_parameters.model_version",
)


@dataclass(frozen=True)
class ConfKeys:
    """The keys of one kind of ``-c`` conf, in FATE's layout, as :mod:`client.confs` reads them
    (tests/unit/test_conf_keys.py holds the two together); ``flow model <command> --help`` prints them
    with FATE's name for the example conf, which ``examples/model/`` holds.

    A dotted key is one of a nested object (``job_parameters.model_id``); ``role``-like keys are role maps
    (``{"guest": [9999], "host": [10000]}``). ``without_job`` keys are required unless ``-j`` names the
    job; ``accepted`` keys are FATE's, taken and not needed.
    """

    example: str
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    without_job: tuple[str, ...] = ()
    accepted: tuple[str, ...] = ()

    def describe(self, title: str) -> str:
        kinds = (
            ("required", self.required),
            ("required without -j", self.without_job),
            ("optional", self.optional),
            ("accepted, not needed", self.accepted),
        )
        width = shutil.get_terminal_size().columns - 2  # as argparse wraps the rest of the help
        lines = [f"{title} (e.g. examples/model/{self.example}):"]
        lines += [
            textwrap.fill(f"{kind}: {', '.join(keys)}", width, initial_indent="  ", subsequent_indent="    ")
            for kind, keys in kinds
            if keys
        ]
        return "\n".join(lines)


CONF_KEYS: dict[str, ConfKeys] = {
    "import": ConfKeys("import_model.json", (*confs.MODEL_KEYS, "file"), ("force_update", "sha256")),
    "restore": ConfKeys("restore_model.json", confs.MODEL_KEYS, ("force_update", "sha256")),
    "export": ConfKeys("export_model.json", (*confs.MODEL_KEYS, "output_path")),
    "store": ConfKeys("store_model.json", confs.MODEL_KEYS, ("force_update",)),
    "load": ConfKeys(
        "publish_load_model.json",
        _PUBLISHED_KEYS,
        ("job_parameters.load_type", "job_parameters.file_path", "job_parameters.use_transfer_url_on_serving"),
    ),
    "bind": ConfKeys("bind_model_service.json", ("service_id",), ("servings",), without_job=_PUBLISHED_KEYS),
    "migrate": ConfKeys(
        "migrate_model.json",
        (
            "role",
            "execute_party",
            "migrate_initiator.role",
            "migrate_initiator.party_id",
            "migrate_role",
            "model_id",
            "model_version",
        ),
        ("unify_model_version",),
        accepted=("job_parameters",),
    ),
    "homo-convert": ConfKeys("homo_convert_model.json", confs.MODEL_KEYS, ("framework_name",)),
    "homo-deploy": ConfKeys(
        "homo_deploy_model.json",
        (*confs.MODEL_KEYS, "service_id", "component_name", "deployment_type", "deployment_parameters"),
        ("framework_name",),
    ),
}
"""Every kind of ``-c`` conf, by command (``restore`` and ``store`` are import's and export's ``--from-database``
and ``--to-database``)."""


class _Commands:
    """Adds subcommands that all accept ``--address`` and run a handler."""

    def __init__(self, parser: argparse.ArgumentParser, title: str) -> None:
        self._sub = parser.add_subparsers(title=title, metavar="<command>", required=True)
        self._address = argparse.ArgumentParser(add_help=False)
        # SUPPRESS: not given after the command, the value given before it (or None) stays.
        self._address.add_argument(
            "--address", default=argparse.SUPPRESS, help="registry host:port (replicas: comma-separated)"
        )

    def group(self, name: str, help: str) -> _Commands:
        return _Commands(self._sub.add_parser(name, help=help, description=help, allow_abbrev=False), "commands")

    def add(self, name: str, help: str, handler: Handler, epilog: str | None = None) -> argparse.ArgumentParser:
        parser = self._sub.add_parser(
            name,
            help=help,
            description=help,
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,  # keeps the epilog's lines
            parents=[self._address],
            allow_abbrev=False,
        )
        parser.set_defaults(handler=handler)
        return parser

    def add_conf_command(
        self, name: str, help: str, handler: Handler, *, variant: tuple[str, str] | None = None, required: bool = True
    ) -> argparse.ArgumentParser:
        """A command reading a ``-c`` conf, its keys (:data:`CONF_KEYS`) in its help; ``variant`` is the
        option that makes it read another kind of conf, and that kind."""
        epilog = CONF_KEYS[name].describe("conf keys")
        if variant is not None:
            option, kind = variant
            epilog += "\n" + CONF_KEYS[kind].describe(f"conf keys with {option}")
        parser = self.add(name, help, handler, epilog)
        parser.add_argument(
            "-c", "--conf-path", type=Path, required=required, help="configuration file path (its keys: below)"
        )
        return parser


def _job_id(parser: argparse.ArgumentParser, required: bool) -> None:
    # FATE documents --job_id for the tag commands and --job-id elsewhere; both are accepted everywhere.
    parser.add_argument("-j", "--job-id", "--job_id", dest="job_id", required=required, help="a valid job id")


def _model(parser: argparse.ArgumentParser, model_id_required: bool = True) -> None:
    parser.add_argument("--model-id", required=model_id_required, help="model id")
    parser.add_argument("--model-version", required=True, help="model version")


def _party(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument("-r", "--role", choices=ROLES, metavar="ROLE", required=required, help=", ".join(ROLES))
    parser.add_argument("-p", "--party-id", required=required, help="party id")


def _paging(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--page-size", type=_integer(32), default=0, help="rows per page (default: the registry's)")
    parser.add_argument("--page-token", default="", help="meta.next_page_token of the previous page")


def _add_model_commands(commands: _Commands) -> None:
    parser = commands.add_conf_command("load", "load a deployed model into FATE-Serving", _load, required=False)
    _job_id(parser, required=False)

    parser = commands.add_conf_command("bind", "bind a deployed model to a FATE-Serving service id", _bind)
    _job_id(parser, required=False)

    parser = commands.add_conf_command(
        "import",
        "import a model archive, or restore it from the model store",
        _import,
        variant=("--from-database", "restore"),
    )
    parser.add_argument("--from-database", action="store_true", help="restore the model from the model store")

    parser = commands.add_conf_command(
        "export", "export a model archive, or store it in the model store", _export, variant=("--to-database", "store")
    )
    parser.add_argument("--to-database", action="store_true", help="store the model in the model store")

    commands.add_conf_command("migrate", "migrate a model to new party ids", _migrate)

    parser = commands.add("tag-list", "list the tags of a model", _tag_list)
    _job_id(parser, required=True)

    parser = commands.add("tag-model", "add a tag to a model, or remove it", _tag_model)
    _job_id(parser, required=True)
    parser.add_argument("-t", "--tag-name", required=True, help="tag name")
    parser.add_argument("--remove", action="store_true", help="remove the tag")

    parser = commands.add("deploy", "make a deployed (child) version of a model on every party", _deploy)
    _model(parser)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--cpn-list", help='components to deploy, e.g. "reader_0, hetero_lr_0"')
    source.add_argument("--cpn-path", type=Path, help="file holding the component list")
    source.add_argument("--dsl-path", type=Path, help="predict DSL file")
    parser.add_argument("--cpn-step-index", action="append", default=[], metavar="CPN:INDEX", help="use a checkpoint")
    parser.add_argument("--cpn-step-name", action="append", default=[], metavar="CPN:NAME", help="use a checkpoint")

    for kind in ("dsl", "conf"):
        parser = commands.add(
            f"get-predict-{kind}", f"write the predict {kind} of a model", functools.partial(_get_predict, kind=kind)
        )
        _model(parser)
        parser.add_argument("-o", "--output-path", required=True, help="output directory")

    parser = commands.add("get-model-info", "query the party models of a version", _get_model_info)
    _model(parser, model_id_required=False)
    _party(parser, required=False)
    parser.add_argument("--detail", action="store_true", help="show every column")

    commands.add_conf_command("homo-convert", "convert a homo model to another ML framework", _homo_convert)
    commands.add_conf_command("homo-deploy", "deploy a converted homo model to KFServing", _homo_deploy)

    parser = commands.add("unload", "unload a deployed version from every party's FATE-Serving", _unload)
    _model(parser)
    parser = commands.add("unbind", "remove service id bindings of a deployed version", _unbind)
    _model(parser)
    parser.add_argument("--service-id", action="append", default=[], help="service id (default: every one)")

    parser = commands.add("delete", "delete a party model version", _delete)
    _model(parser)
    _party(parser, required=True)
    parser.add_argument("--from-store", action="store_true", help="also delete the copy in the model store")

    parser = commands.add(
        "list-versions", "list the versions of a model id, or of every model, newest first", _list_versions
    )
    parser.add_argument("--model-id", default="", help="model id (default: every model)")
    _paging(parser)


def _add_checkpoint_commands(commands: _Commands) -> None:
    listing = commands.add("list", "list the checkpoints of a component", _checkpoint_list)
    getting = commands.add("get", "get one checkpoint of a component", _checkpoint_get)
    for parser in (listing, getting):
        _model(parser)
        _party(parser, required=True)
        parser.add_argument("-cpn", "--component-name", required=True, help="component name")
    step = getting.add_mutually_exclusive_group(required=True)
    step.add_argument("--step-index", type=_integer(64), help="step index")
    step.add_argument("--step-name", help="step name")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flow", description="FATE-Flow model registry client", allow_abbrev=False)
    parser.add_argument(
        "--address", default=None, help="registry host:port (replicas: comma-separated; see client.settings)"
    )
    commands = _Commands(parser, "command groups")
    _add_model_commands(commands.group("model", "model operations"))
    _add_checkpoint_commands(commands.group("checkpoint", "checkpoint operations"))

    operations = commands.group("operation", "the registry's operation log").add(
        "list", "list logged operations", _operation_list
    )
    operations.add_argument("--model-id", help="model id")
    operations.add_argument("--model-version", help="model version")
    operations.add_argument("--operation", help="operation name, e.g. deploy")
    _paging(operations)

    init = commands.add("init", "remember where the registry is", _init)
    init.add_argument("-c", "--server-conf-path", type=Path, help="service_conf.yaml to read the address from")
    init.add_argument("--ip", help="registry host")
    init.add_argument("--port", type=_port, help="registry port")
    init.add_argument("--tls-ca", type=Path, help="CA certificate that signed the registry's (turns TLS on)")
    init.add_argument("--tls-cert", type=Path, help="this client's certificate, for mutual TLS (with --tls-key)")
    init.add_argument("--tls-key", type=Path, help="this client's private key, for mutual TLS (with --tls-cert)")
    init.add_argument("--reset", action="store_true", help="forget the saved settings")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    limit_arenas()  # gRPC's receiving threads otherwise leave a gigabyte export's buffers spread over arenas
    keep_heap_for_streams()  # an export's 1 MiB messages come from a kept heap, not freshly faulted pages
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse has already reported on stderr
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    status: int | None = None
    try:
        answer = args.handler(args)
    except RegistryError as error:
        answer = render.error_answer(error)
    except KeyboardInterrupt:
        answer = render.envelope(int(Retcode.OPERATING_ERROR), "interrupted; the command may not have completed")
        status = 130
    except Exception as error:  # a bug or an unforeseen environment: the class name only, never a traceback
        answer = render.unexpected_answer(error)
    try:
        print(render.dumps(answer), flush=True)
    except BrokenPipeError:  # the reader went away (flow ... | head): no traceback, and none at exit either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return status if status is not None else render.exit_code(answer)
