"""homo-deploy without the ``[deploy]`` extra: a clear error naming the extra, not an ImportError."""

from __future__ import annotations

import importlib
import sys

import pytest

from fate_registry.errors import Reason, RegistryError, Retcode

DEPLOY_MODULES = ("party_agent.homo_deploy.deploy", "party_agent.homo_deploy.kube", "party_agent.homo_deploy.objects")


@pytest.mark.parametrize("package", ["kubernetes", "boto3"])
def test_a_missing_client_names_the_deploy_extra(monkeypatch: pytest.MonkeyPatch, package: str) -> None:
    monkeypatch.setitem(sys.modules, package, None)  # importing it now raises ImportError, as if not installed
    for module in DEPLOY_MODULES:
        monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(RegistryError) as raised:
        importlib.import_module("party_agent.homo_deploy.deploy")
    error = raised.value
    assert error.reason is Reason.NOT_IMPLEMENTED
    assert error.retcode == Retcode.EXCEPTION_ERROR
    assert "homo-deploy needs the deploy extra: pip install 'fate-registry[deploy]'" in error.message
    assert package in error.message


def test_with_the_extra_the_deploy_module_imports() -> None:
    assert callable(importlib.import_module("party_agent.homo_deploy.deploy").homo_deploy)
