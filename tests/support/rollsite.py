"""A rollsite-style router for tests: forwards eggroll Packets by ``header.dst`` as rollsite does.

``python -m tests.support.rollsite --root DIR [--host H] [--port P]`` serves
``DataTransferService.unaryCall`` and, for each Packet:

- looks ``header.dst.partyId`` / ``header.dst.role`` up in ``DIR/route_table.json`` (FATE's
  shape: ``{"route_table": {party: {role: [{"ip", "port"}], "default": [...]}, "default":
  {"default": [...]}}, "permission": {"default_allow": bool}}``; the party's ``default`` role,
  then the table's ``default`` party when allowed, as rollsite's ``Router.query`` falls back),
  re-read when the file changes;
- applies ``DIR/control.json`` if present: ``{"<party>": {"drop": true}}`` lets the Packet
  vanish (the caller meets its deadline), ``{"<party>": {"delay": seconds}}`` holds it first;
- records it in ``DIR/packets.jsonl``: ``{"metadata", "packet" (base64 of the Packet as
  received; above 64 KiB, with ``body.value`` left out), "body_bytes", "time"}``;
- forwards the bytes unchanged with the same routing metadata and the caller's remaining deadline,
  and returns the answer unchanged; a failure to forward keeps its gRPC code.

It writes ``host:port`` to ``DIR/rollsite.port`` once it serves, and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from fate_registry.channels import CHANNEL_OPTIONS
from fate_registry.fate import proxy_pb2
from fate_registry.grpc_server import StopFlag
from fate_registry.packets import UNARY_CALL

log = logging.getLogger(__name__)
RECORD_WHOLE_BYTES = 64 * 1024
ROUTING_KEYS = ("service", "src-party-id", "src-role", "dest-party-id", "dest-role")


class _JsonFile:
    """A JSON document re-read only when the file changes (or appears, or goes)."""

    def __init__(self, path: Path, empty: Any) -> None:
        self.path, self.empty = path, empty
        self._stamp: float | None = None
        self._value = empty

    def value(self) -> Any:
        try:
            stamp = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            self._stamp, self._value = None, self.empty
            return self._value
        if stamp != self._stamp:
            self._stamp, self._value = stamp, json.loads(self.path.read_text(encoding="utf-8"))
        return self._value


class Rollsite:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.routes = _JsonFile(root / "route_table.json", {})
        self.control = _JsonFile(root / "control.json", {})
        self._record = (root / "packets.jsonl").open("a", encoding="utf-8")
        self._lock = threading.Lock()
        self._channels: dict[str, grpc.Channel] = {}
        self._stop = threading.Event()

    def query(self, party_id: str, role: str) -> str | None:
        """``ip:port`` for a party and role, with rollsite's fallbacks; None when there is no route."""
        document = self.routes.value()
        table = document.get("route_table", {})
        party = table.get(party_id, {})
        endpoints = party.get(role) or party.get("default")
        if not endpoints and document.get("permission", {}).get("default_allow", False):
            endpoints = table.get("default", {}).get("default")
        if not endpoints:
            return None
        return f"{endpoints[0]['ip']}:{endpoints[0]['port']}"

    def _channel(self, address: str) -> grpc.Channel:
        with self._lock:
            if address not in self._channels:
                self._channels[address] = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
            return self._channels[address]

    def _write(self, raw: bytes, packet: proxy_pb2.Packet, metadata: dict[str, str]) -> None:
        if len(raw) > RECORD_WHOLE_BYTES:
            kept = proxy_pb2.Packet(header=packet.header, body=proxy_pb2.Data(key=packet.body.key))
            raw = kept.SerializeToString()
        entry = {
            "metadata": metadata,
            "packet": base64.b64encode(raw).decode("ascii"),
            "body_bytes": len(packet.body.value),
            "time": time.time(),
        }
        with self._lock:
            self._record.write(json.dumps(entry) + "\n")
            self._record.flush()

    def unary_call(self, raw: bytes, context: grpc.ServicerContext) -> bytes:
        packet = proxy_pb2.Packet.FromString(raw)
        metadata = {k: str(v) for k, v in context.invocation_metadata() if k in ROUTING_KEYS}
        self._write(raw, packet, metadata)
        dst = packet.header.dst
        fault = self.control.value().get(dst.partyId, {})
        if fault.get("drop"):
            self._stop.wait(context.time_remaining() or 0)  # the Packet vanished: the caller's deadline passes
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"rollsite dropped the Packet for party {dst.partyId}")
        if fault.get("delay"):
            self._stop.wait(float(fault["delay"]))
        address = self.query(dst.partyId, dst.role)
        if address is None:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"rollsite has no route to party {dst.partyId} role {dst.role}")
        forward = self._channel(address).unary_unary(UNARY_CALL, request_serializer=None, response_deserializer=None)
        remaining = context.time_remaining()
        try:
            answer: bytes = forward(raw, timeout=remaining, metadata=tuple(metadata.items()))
        except grpc.RpcError as exc:
            call: grpc.Call = exc  # type: ignore[assignment]
            context.abort(call.code(), f"rollsite could not deliver to party {dst.partyId}: {call.details()}")
        return answer

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._record.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    rollsite = Rollsite(args.root)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32), options=list(CHANNEL_OPTIONS))
    handler = grpc.unary_unary_rpc_method_handler(
        rollsite.unary_call, request_deserializer=None, response_serializer=None
    )
    service, method = UNARY_CALL.strip("/").split("/")
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, {method: handler}),))
    port = server.add_insecure_port(f"{args.host}:{args.port}")
    server.start()
    port_file = args.root / "rollsite.port"
    port_file.with_suffix(".tmp").write_text(f"{args.host}:{port}\n", encoding="utf-8")
    port_file.with_suffix(".tmp").replace(port_file)
    log.info("rollsite listening on %s:%s", args.host, port)
    StopFlag.install().wait()
    rollsite.close()
    server.stop(2).wait()


if __name__ == "__main__":
    main()
