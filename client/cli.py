"""``flow``: FATE-Flow's model commands, options and JSON answers, against the registry.

Every command prints one JSON answer on stdout and exits 0 when its retcode is 0, else 1. Usage
errors (an unknown command, a missing required option) are argparse's: usage on stderr, exit 2
and no JSON, as FATE's click-based CLI does. Progress bars go to stderr, and only to a terminal.

Beyond FATE: ``flow model unload|unbind|delete|list-versions`` and ``flow operation list``, and a
global ``--address`` (also accepted after the command).
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from client import confs, handlers, render
from fate_registry.errors import RegistryError, Retcode
from fate_registry.malloc import keep_heap_for_streams, limit_arenas

ROLES = ("local", "guest", "arbiter", "host")


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
    """The keys of one kind of ``-c`` conf, in FATE's layout, as :mod:`client.confs` reads them.

    tests/unit/test_conf_keys.py holds the two together; ``flow model <command> --help`` prints them with FATE's name
    for the example conf, which ``examples/model/`` holds.

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
    "export": ConfKeys("export_model.json", (*confs.MODEL_KEYS, "output_path"), ("stored",)),
    "store": ConfKeys("store_model.json", confs.MODEL_KEYS, ("force_update", "stored")),
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

    def add(
        self, name: str, help: str, handler: handlers.Handler, epilog: str | None = None
    ) -> argparse.ArgumentParser:
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
        self,
        name: str,
        help: str,
        handler: handlers.Handler,
        *,
        variant: tuple[str, str] | None = None,
        required: bool = True,
    ) -> argparse.ArgumentParser:
        """A command reading a ``-c`` conf, its keys (:data:`CONF_KEYS`) in its help.

        ``variant`` is the option that makes it read another kind of conf, and that kind.
        """
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
    parser = commands.add_conf_command("load", "load a deployed model into FATE-Serving", handlers.load, required=False)
    _job_id(parser, required=False)

    parser = commands.add_conf_command("bind", "bind a deployed model to a FATE-Serving service id", handlers.bind)
    _job_id(parser, required=False)

    parser = commands.add_conf_command(
        "import",
        "import a model archive, or restore it from the model store",
        handlers.import_model,
        variant=("--from-database", "restore"),
    )
    parser.add_argument("--from-database", action="store_true", help="restore the model from the model store")

    parser = commands.add_conf_command(
        "export",
        "export a model archive, or store it in the model store",
        handlers.export_model,
        variant=("--to-database", "store"),
    )
    parser.add_argument("--to-database", action="store_true", help="store the model in the model store")
    parser.add_argument(
        "--stored", action="store_true", help="write every archive entry stored, not deflated (conf key: stored)"
    )

    commands.add_conf_command("migrate", "migrate a model to new party ids", handlers.migrate)

    parser = commands.add("tag-list", "list the tags of a model", handlers.tag_list)
    _job_id(parser, required=True)

    parser = commands.add("tag-model", "add a tag to a model, or remove it", handlers.tag_model)
    _job_id(parser, required=True)
    parser.add_argument("-t", "--tag-name", required=True, help="tag name")
    parser.add_argument("--remove", action="store_true", help="remove the tag")

    parser = commands.add("deploy", "make a deployed (child) version of a model on every party", handlers.deploy)
    _model(parser)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--cpn-list", help='components to deploy, e.g. "reader_0, hetero_lr_0"')
    source.add_argument("--cpn-path", type=Path, help="file holding the component list")
    source.add_argument("--dsl-path", type=Path, help="predict DSL file")
    parser.add_argument("--cpn-step-index", action="append", default=[], metavar="CPN:INDEX", help="use a checkpoint")
    parser.add_argument("--cpn-step-name", action="append", default=[], metavar="CPN:NAME", help="use a checkpoint")

    for kind in ("dsl", "conf"):
        parser = commands.add(
            f"get-predict-{kind}",
            f"write the predict {kind} of a model",
            functools.partial(handlers.get_predict, kind=kind),
        )
        _model(parser)
        parser.add_argument("-o", "--output-path", required=True, help="output directory")

    parser = commands.add("get-model-info", "query the party models of a version", handlers.get_model_info)
    _model(parser, model_id_required=False)
    _party(parser, required=False)
    parser.add_argument("--detail", action="store_true", help="show every column")

    commands.add_conf_command("homo-convert", "convert a homo model to another ML framework", handlers.homo_convert)
    commands.add_conf_command("homo-deploy", "deploy a converted homo model to KFServing", handlers.homo_deploy)

    parser = commands.add("unload", "unload a deployed version from every party's FATE-Serving", handlers.unload)
    _model(parser)
    parser = commands.add("unbind", "remove service id bindings of a deployed version", handlers.unbind)
    _model(parser)
    parser.add_argument("--service-id", action="append", default=[], help="service id (default: every one)")

    parser = commands.add("delete", "delete a party model version", handlers.delete)
    _model(parser)
    _party(parser, required=True)
    parser.add_argument("--from-store", action="store_true", help="also delete the copy in the model store")

    parser = commands.add(
        "list-versions", "list the versions of a model id, or of every model, newest first", handlers.list_versions
    )
    parser.add_argument("--model-id", default="", help="model id (default: every model)")
    _paging(parser)


def _add_checkpoint_commands(commands: _Commands) -> None:
    listing = commands.add("list", "list the checkpoints of a component", handlers.checkpoint_list)
    getting = commands.add("get", "get one checkpoint of a component", handlers.checkpoint_get)
    for parser in (listing, getting):
        _model(parser)
        _party(parser, required=True)
        parser.add_argument("-cpn", "--component-name", required=True, help="component name")
    step = getting.add_mutually_exclusive_group(required=True)
    step.add_argument("--step-index", type=_integer(64), help="step index")
    step.add_argument("--step-name", help="step name")


def build_parser() -> argparse.ArgumentParser:
    """The ``flow`` argument parser: every command group and command, with their ``--help``."""
    parser = argparse.ArgumentParser(prog="flow", description="FATE-Flow model registry client", allow_abbrev=False)
    parser.add_argument(
        "--address", default=None, help="registry host:port (replicas: comma-separated; see client.settings)"
    )
    commands = _Commands(parser, "command groups")
    _add_model_commands(commands.group("model", "model operations"))
    _add_checkpoint_commands(commands.group("checkpoint", "checkpoint operations"))

    operations = commands.group("operation", "the registry's operation log").add(
        "list", "list logged operations", handlers.operation_list
    )
    operations.add_argument("--model-id", help="model id")
    operations.add_argument("--model-version", help="model version")
    operations.add_argument("--operation", help="operation name, e.g. deploy")
    _paging(operations)

    init = commands.add("init", "remember where the registry is", handlers.init)
    init.add_argument("-c", "--server-conf-path", type=Path, help="service_conf.yaml to read the address from")
    init.add_argument("--ip", help="registry host")
    init.add_argument("--port", type=_port, help="registry port")
    init.add_argument("--tls-ca", type=Path, help="CA certificate that signed the registry's (turns TLS on)")
    init.add_argument("--tls-cert", type=Path, help="this client's certificate, for mutual TLS (with --tls-key)")
    init.add_argument("--tls-key", type=Path, help="this client's private key, for mutual TLS (with --tls-cert)")
    init.add_argument("--reset", action="store_true", help="forget the saved settings")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``flow`` command and print its answer; the exit code is 0 when the answer's retcode is 0."""
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
