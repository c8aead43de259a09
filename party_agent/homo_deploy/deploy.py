"""``flow model homo-deploy``: a converted homo model uploaded and served by KServe / KFServing.

Every check runs before anything changes anywhere: the request (deployment type, parameters,
service name, kubeconfig, storage settings), the model (the component is in the train DSL, is a
homo module, was converted to the framework, and its converted files match the version's manifest)
and the cluster (an existing InferenceService is only replaced when ``replace`` is set). Only then
are the files uploaded, the storage secret written and attached to the service account, and the
InferenceService created or replaced.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from fate_registry.errors import Reason, RegistryError, Retcode
from fate_registry.identity import validate_name
from party_agent.homo_deploy.extra import needs_deploy_extra
from party_agent.homo_deploy.frameworks import Framework, framework_for, is_homo
from party_agent.homo_deploy.inference_service import (
    DEFAULT_SERVICE_ACCOUNT,
    STORAGE_SECRET,
    ServiceSpec,
    inference_service,
    storage_secret,
)
from party_agent.homo_deploy.params import DeploymentParameters, Flavour, check_service_id, invalid
from party_agent.homo_deploy.request import HomoDeployRequest
from party_agent.manifest import Manifest, hash_file
from party_agent.metadata import PartyModelRecord

with needs_deploy_extra():  # the kubernetes and boto3 clients: the [deploy] extra
    from party_agent.homo_deploy.kube import KubeClient
    from party_agent.homo_deploy.objects import Upload, object_prefix, open_object_store

log = logging.getLogger(__name__)


def _component(record: PartyModelRecord, name: str, model: str) -> tuple[str, str]:
    """The component's module and its first output model alias, from the train DSL (FATE's checks)."""
    dsl = json.loads(record.train_dsl_json or "{}")
    component = (dsl.get("components") or {}).get(name)
    if not isinstance(component, dict):
        raise invalid(f"Model {model} does not contain component {name}.")
    aliases = (component.get("output") or {}).get("model") or []
    if not aliases:
        raise invalid(f"Component {name} of model {model} does not have output model.")
    return str(component.get("module", "")), str(aliases[0])


def _converted_files(
    version_dir: Path, manifest: Manifest, converted: str, framework: Framework, prefix: str
) -> list[Upload]:
    """The files to upload, each checked against the manifest, with their object keys."""
    source = version_dir / converted / framework.converted
    if framework.directory:
        found = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else []
    else:
        found = [source] if source.is_file() else []
    if not found:
        raise invalid(f"{converted} holds no {framework.converted} ({framework.name})")
    recorded = manifest.by_path()
    uploads = []
    for path in found:
        relative = path.relative_to(version_dir).as_posix()
        entry = recorded.get(relative)
        size, sha256, _ = hash_file(path)
        if entry is None or (entry.size, entry.sha256) != (size, sha256):
            raise RegistryError(Reason.DATA_LOSS, f"{relative} does not match the model's manifest")
        name = framework.uploaded
        if framework.directory:
            name = f"{framework.uploaded}/{path.relative_to(source).as_posix()}"
        uploads.append(Upload(f"{prefix}/{name}", path))
    return uploads


def homo_deploy(
    version_dir: Path, record: PartyModelRecord, party_model_id: str, request: HomoDeployRequest
) -> dict[str, Any]:
    """Deploy; the InferenceService as the API server answered it."""
    flavour = Flavour.of(request.deployment_type)
    service_id = check_service_id(request.service_id)
    if not request.component:
        raise invalid("component_name is required")
    validate_name(request.component, "component_name")
    parameters = DeploymentParameters.parse(request.parameters_json)
    model = f"{party_model_id} {record.model_version}"
    module, alias = _component(record, request.component, model)
    if not is_homo(module):
        raise invalid(
            f"Component {request.component} of model {model} is {module or 'of no module'}, not a homo "
            "(horizontally trained) model: only HomoLR, HomoNN and HomoSecureBoost can be deployed"
        )
    framework = framework_for(module, request.framework_name)
    converted = f"variables/data/{request.component}/{alias}/converted_model"
    if not (version_dir / converted).is_dir():
        raise invalid(
            f"Component {request.component} in Model {model} isn't converted: run flow model homo-convert first"
        )
    prefix = object_prefix(party_model_id, record.model_version, service_id)
    uploads = _converted_files(version_dir, record.manifest, converted, framework, prefix)
    store = open_object_store(parameters.storage)
    kube = KubeClient(parameters.kubeconfig)
    try:
        namespace = parameters.namespace or kube.default_namespace
        existing = kube.get_service(flavour, namespace, service_id)
        if existing is not None and not parameters.replace:
            raise RegistryError(
                Reason.MODEL_EXISTS,
                f"InferenceService {namespace}/{service_id} already exists: set deployment_parameters.replace "
                "to true to replace it",
                retcode=Retcode.EXCEPTION_ERROR,
            )
        store.upload(uploads)
        log.info("homo-deploy: uploaded %d file(s) of %s to %s", len(uploads), model, store.uri(prefix))
        if not parameters.skip_create_storage_secret:
            kube.apply_secret(namespace, storage_secret(flavour, namespace, store.access()))
            kube.attach_secret(namespace, DEFAULT_SERVICE_ACCOUNT, STORAGE_SECRET)
        spec = ServiceSpec(
            flavour,
            service_id,
            namespace,
            framework,
            store.uri(prefix),
            parameters.protocol_version,
            party_model_id,
            record.model_version,
        )
        body = inference_service(spec)
        if existing is None:
            answer = kube.create_service(flavour, namespace, body)
        else:
            answer = kube.replace_service(flavour, namespace, body, str(existing["metadata"]["resourceVersion"]))
        log.info("homo-deploy: InferenceService %s/%s %s", namespace, service_id, "replaced" if existing else "created")
        return answer
    finally:
        kube.close()
