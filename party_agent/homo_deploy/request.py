"""What a homo-deploy asks of the agent (kept apart from the deployer, which imports heavy clients)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HomoDeployRequest:
    """A homo-deploy as the agent receives it; ``parameters_json`` holds the kubeconfig and is never logged."""

    component: str
    service_id: str
    deployment_type: str
    parameters_json: str  # FATE's deployment_parameters, kubeconfig included: never logged
    framework_name: str
