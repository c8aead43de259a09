"""``fate-registry``: start the coordinator, one agent, or a whole local federation (``up``)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from fate_registry import config
from fate_registry.errors import RegistryError
from fate_registry.malloc import limit_arenas


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--conf", type=Path, help="service_conf.yaml (default: $FATE_REGISTRY_CONF or conf/service_conf.yaml)"
    )
    parser.add_argument(
        "--data-dir", type=Path, help="keep all state under this directory (overrides the conf's data_dir)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``fate-registry`` argument parser: ``server``, ``agent``, ``up`` and ``make-model``."""
    parser = argparse.ArgumentParser(prog="fate-registry", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    server = sub.add_parser("server", help="run the coordinator")
    _common(server)
    server.add_argument("--port-file", type=Path, help="write the bound host:port here once serving")
    server.add_argument(
        "--agent-address",
        action="append",
        default=[],
        metavar="PARTY=HOST:PORT",
        help="override a party's agent address from the conf (repeatable)",
    )

    agent = sub.add_parser("agent", help="run the agent of one party")
    _common(agent)
    agent.add_argument("--party-id", required=True)
    agent.add_argument("--port-file", type=Path, help="write the bound host:port here once serving")

    up = sub.add_parser(
        "up",
        help="run a coordinator and one agent per configured party, until Ctrl-C",
        description="Run a coordinator and one agent per party of the conf as child processes, until Ctrl-C or "
        "SIGTERM stops them all. The federation lives and dies as one: when any child exits (an agent that "
        "crashes or is killed, say), up stops all the others and exits 1, printing which child ended, how, "
        "and the last lines of its log. To keep the other parties up when one fails, run each program on "
        "its own (fate-registry server, fate-registry agent).",
    )
    _common(up)
    up.add_argument("--ready-timeout", type=float, default=60.0, help="seconds to wait for every server (default 60)")

    model = sub.add_parser("make-model", help="write a generated trained FATE model and its archives (for demos)")
    model.add_argument("--out", type=Path, required=True, help="directory for the archives and import confs")
    model.add_argument("--size-mib", type=float, default=0.0, help="grow the model's weights to about this size")
    return parser


def _override_agents(conf: config.ServiceConf, overrides: list[str]) -> config.ServiceConf:
    addresses = {}
    for item in overrides:
        party, sep, address = item.partition("=")
        if not sep:
            raise config.ConfError(None, "--agent-address", f"expected PARTY=HOST:PORT, got {item!r}")
        conf.party(party)
        addresses[party] = _address(address)
    return config.with_addresses(conf, None, addresses)


def _address(text: str) -> config.Address:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise config.ConfError(None, "--agent-address", f"expected HOST:PORT, got {text!r}")
    return config.Address(host, int(port))


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``fate-registry`` command; the exit code is 0 on success."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        if args.command == "make-model":
            from launcher.demo_model import make_demo_model

            make_demo_model(args.out, int(args.size_mib * 1024 * 1024))
            return 0
        conf = config.load(args.conf, args.data_dir)
        if args.command in ("server", "agent"):
            limit_arenas()
        if args.command == "server":
            from registry_server.main import serve

            serve(_override_agents(conf, args.agent_address), args.port_file)
        elif args.command == "agent":
            from party_agent.main import serve as serve_agent

            serve_agent(conf, str(args.party_id), args.port_file)
        else:
            from launcher.federation import run_federation

            return run_federation(conf, args.conf, args.ready_timeout)
    except (config.ConfError, RegistryError, OSError) as exc:
        print(f"fate-registry: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
