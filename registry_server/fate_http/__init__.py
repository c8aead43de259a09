"""FATE-Flow 1.11's HTTP API on the coordinator, for FATE's own clients.

The clients are the 1.11 ``flow`` CLI, ``FlowClient`` and the ``pipeline`` SDK. The model, tag and checkpoint routes are
served by the same RPC methods as the gRPC API (:mod:`registry_server.fate_http.calls`), everything else passed to an
upstream FATE-Flow. docs/fate_http.md.
"""
