"""A typed wrapper over the official ``kubernetes`` client: the few calls homo-deploy makes.

The client is built from the kubeconfig text of the request, held in memory only. Neither the
kubeconfig nor a request body (the storage secret carries a key pair) reaches a log line or an
error: failures name the API server, the object and the server's own status message.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import urllib3
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from fate_registry.errors import Reason, RegistryError, Retcode
from party_agent.homo_deploy.inference_service import PLURAL
from party_agent.homo_deploy.params import Flavour, invalid

# The client logs response bodies at DEBUG; a secret's body holds a key pair.
logging.getLogger("kubernetes.client.rest").setLevel(logging.INFO)
TIMEOUT_SECONDS = 30
VERSION = "v1beta1"


def _server_message(exc: ApiException) -> str:
    """The ``message`` of the API server's Status answer, or the HTTP reason."""
    try:
        status = yaml.safe_load(exc.body or "") if exc.body else None
    except yaml.YAMLError:
        status = None
    if isinstance(status, dict) and isinstance(status.get("message"), str):
        return str(status["message"])
    return str(exc.reason or "")


# Kubeconfig entries that would make the agent run a command or read its own files: a kubeconfig
# comes in a request, so only inline credentials are accepted.
_LOCAL_ONLY = {
    "users": ("exec", "auth-provider", "client-certificate", "client-key", "tokenFile", "token-file"),
    "clusters": ("certificate-authority",),
}


def _check_inline(config: dict[str, Any]) -> None:
    for section, keys in _LOCAL_ONLY.items():
        for entry in config.get(section) or []:
            body = entry.get(section[:-1]) if isinstance(entry, dict) else None
            used = sorted(k for k in keys if isinstance(body, dict) and k in body)
            if used:
                raise invalid(
                    f"deployment_parameters.config_file_content: {section[:-1]} {entry.get('name', '')!r} uses "
                    f"{', '.join(used)}, which would make the agent run a command or read its own files; "
                    "give the credentials inline (token, client-certificate-data, client-key-data, "
                    "certificate-authority-data)"
                )


def _context_namespace(config: dict[str, Any]) -> str:
    current = config.get("current-context")
    for entry in config.get("contexts") or []:
        if isinstance(entry, dict) and entry.get("name") == current:
            namespace = (entry.get("context") or {}).get("namespace")
            return str(namespace) if namespace else ""
    return ""


class KubeClient:
    """The Kubernetes API server the request's kubeconfig names; errors name the object, never the kubeconfig."""

    def __init__(self, kubeconfig: str) -> None:
        try:
            config = yaml.safe_load(kubeconfig)
        except yaml.YAMLError:
            config = None
        if not isinstance(config, dict):
            raise invalid("deployment_parameters.config_file_content is not a kubeconfig (YAML mapping)")
        _check_inline(config)
        try:
            self._api = k8s_config.new_client_from_config_dict(config)
        except (ConfigException, ValueError, TypeError, KeyError):
            raise invalid(
                "deployment_parameters.config_file_content is not a usable kubeconfig: "
                "it needs a current context with a cluster server and user credentials"
            ) from None
        self.server = str(self._api.configuration.host)
        self.default_namespace = _context_namespace(config) or "default"
        self._custom = k8s.CustomObjectsApi(self._api)
        self._core = k8s.CoreV1Api(self._api)

    def close(self) -> None:
        self._api.close()

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except ApiException as exc:
            status = int(exc.status or 0)
            detail = f"{what}: the Kubernetes API server at {self.server} answered {status} {_server_message(exc)}"
            reasons = {401: Reason.UNAUTHENTICATED, 403: Reason.PERMISSION_DENIED, 409: Reason.MODEL_EXISTS}
            reason = reasons.get(status, Reason.INVALID_ARGUMENT if 400 <= status < 500 else Reason.INTERNAL)
            raise RegistryError(reason, detail, {"status": str(status)}, retcode=Retcode.EXCEPTION_ERROR) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise RegistryError(
                Reason.PARTY_UNAVAILABLE,
                f"{what}: cannot reach the Kubernetes API server at {self.server} ({type(exc).__name__})",
                retcode=Retcode.EXCEPTION_ERROR,
            ) from None

    def _read(self, call: Any, *args: Any) -> dict[str, Any] | None:
        """``call(*args)`` as a dict, or None when the object does not exist (404)."""
        try:
            found = call(*args, _request_timeout=TIMEOUT_SECONDS)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return found if isinstance(found, dict) else dict(self._api.sanitize_for_serialization(found))

    # -- InferenceService --------------------------------------------------------------------------

    def get_service(self, flavour: Flavour, namespace: str, name: str) -> dict[str, Any] | None:
        with self._errors(f"reading InferenceService {namespace}/{name}"):
            return self._read(
                self._custom.get_namespaced_custom_object, flavour.group, VERSION, namespace, PLURAL, name
            )

    def create_service(self, flavour: Flavour, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._errors(f"creating InferenceService {namespace}/{body['metadata']['name']}"):
            created: dict[str, Any] = self._custom.create_namespaced_custom_object(
                flavour.group, VERSION, namespace, PLURAL, body, _request_timeout=TIMEOUT_SECONDS
            )
        return created

    def replace_service(
        self, flavour: Flavour, namespace: str, body: dict[str, Any], resource_version: str
    ) -> dict[str, Any]:
        """PUT ``body`` over the object at ``resource_version`` (a custom resource needs it for an update)."""
        name = body["metadata"]["name"]
        body = {**body, "metadata": {**body["metadata"], "resourceVersion": resource_version}}
        with self._errors(f"replacing InferenceService {namespace}/{name}"):
            replaced: dict[str, Any] = self._custom.replace_namespaced_custom_object(
                flavour.group, VERSION, namespace, PLURAL, name, body, _request_timeout=TIMEOUT_SECONDS
            )
        return replaced

    # -- storage credentials -----------------------------------------------------------------------

    def apply_secret(self, namespace: str, secret: dict[str, Any]) -> None:
        """Create the secret, or patch it when it exists (FATE's create-or-patch)."""
        name = secret["metadata"]["name"]
        with self._errors(f"writing secret {namespace}/{name}"):
            if self._read(self._core.read_namespaced_secret, name, namespace) is None:
                self._core.create_namespaced_secret(namespace, secret, _request_timeout=TIMEOUT_SECONDS)
            else:
                self._core.patch_namespaced_secret(name, namespace, secret, _request_timeout=TIMEOUT_SECONDS)

    def attach_secret(self, namespace: str, account: str, secret_name: str) -> None:
        """List ``secret_name`` among the service account's secrets, creating the account if needed."""
        with self._errors(f"attaching secret {secret_name} to service account {namespace}/{account}"):
            found = self._read(self._core.read_namespaced_service_account, account, namespace)
            if found is None:
                body = {"metadata": {"name": account}, "secrets": [{"name": secret_name}]}
                self._core.create_namespaced_service_account(namespace, body, _request_timeout=TIMEOUT_SECONDS)
                return
            secrets = [s for s in found.get("secrets") or [] if isinstance(s, dict)]
            if any(s.get("name") == secret_name for s in secrets):
                return
            patch = {"secrets": [*secrets, {"name": secret_name}]}
            self._core.patch_namespaced_service_account(account, namespace, patch, _request_timeout=TIMEOUT_SECONDS)
