"""The registry's Python SDK (:mod:`client.sdk`) and the ``flow`` command line (:mod:`client.cli`)."""

from client.sdk import ExportResult, RegistryClient

__all__ = ["ExportResult", "RegistryClient"]
