"""deploy/k8s: the core kinds against Kubernetes' own schemas, KEDA's resources against ours.

``kubernetes-validate`` carries the OpenAPI schemas of every Kubernetes release and checks
Deployments, Services, ConfigMaps... offline, strictly (unknown fields refused). It has no
schema for custom resources, and no PyPI package validates KEDA's offline, so
``keda.schema.json`` (beside this file) is written from KEDA's documented ScaledObject,
TriggerAuthentication and redis-scaler fields. Beyond the schemas, the tests check what they
cannot: that each ScaledObject watches exactly the Redis lists dramatiq fills for its
Deployment's stages, and that the manifests agree with each other and with the Procfile.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from queue_config.catalog import catalog_of
from queue_config.settings import Settings
from tests.deploy.test_container import procfile
from tests.servers import REPO_ROOT
from workers.cli.main import worker_queues

K8S = REPO_ROOT / "deploy" / "k8s"
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}


def documents(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def every_resource() -> list[tuple[str, dict[str, Any]]]:
    return [(path.name, resource) for path in sorted(K8S.glob("*.yaml")) if path.name != "kustomization.yaml"
            for resource in documents(path)]


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {resource["metadata"]["name"]: resource for _, resource in every_resource() if resource["kind"] == kind}


def container_of(deployment: dict[str, Any]) -> dict[str, Any]:
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize(("file", "resource"), [pair for pair in every_resource() if pair[1]["kind"] not in KEDA_KINDS],
                         ids=lambda value: value if isinstance(value, str) else value["metadata"]["name"])
def test_each_core_resource_is_valid_for_the_newest_kubernetes(file: str, resource: dict[str, Any]) -> None:
    kubernetes_validate.validate(resource, kubernetes_validate.latest_version(), strict=True)

    assert resource["metadata"].get("namespace", "framequeue") == "framequeue"


def test_the_keda_resources_follow_the_documented_fields() -> None:
    schema = json.loads((Path(__file__).parent / "keda.schema.json").read_text())
    keda = [resource for _, resource in every_resource() if resource["kind"] in KEDA_KINDS]

    for resource in keda:
        jsonschema.validate(resource, schema)
    assert sorted(resource["kind"] for resource in keda) == ["ScaledObject", "ScaledObject", "TriggerAuthentication"]


def test_the_keda_schema_refuses_a_misspelt_or_missing_field() -> None:
    schema = json.loads((Path(__file__).parent / "keda.schema.json").read_text())
    scaled = of_kind("ScaledObject")["framequeue-gpu-worker"]
    misspelt = {**scaled, "spec": {**scaled["spec"], "maxReplicas": 3}}
    trigger = scaled["spec"]["triggers"][0]
    no_list = {**scaled, "spec": {**scaled["spec"], "triggers": [{**trigger, "metadata": {"listLength": "2"}}]}}

    for broken in (misspelt, no_list):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)


@pytest.mark.parametrize("worker", ["gpu_worker", "cpu_worker"])
def test_each_worker_deployment_runs_its_procfile_line_and_keda_watches_its_stages_queues(worker: str) -> None:
    name = "framequeue-" + worker.replace("_", "-")
    args = container_of(of_kind("Deployment")[name])["args"]
    scaled = of_kind("ScaledObject")[name]
    namespace = of_kind("ConfigMap")["framequeue-settings"]["data"]["FRAMEQUEUE_NAMESPACE"]
    stages = args[args.index("--stages") + 1].split(",")
    profile = of_kind("ConfigMap")["framequeue-settings"]["data"]["FRAMEQUEUE_MODEL_PROFILE"]
    served = worker_queues(catalog_of(Settings(model_profile=profile)), stages, [])
    queues = {re.sub(r"[^a-z0-9_]", "_", queue) for queue in served}
    triggers = scaled["spec"]["triggers"]
    modifiers = scaled["spec"]["advanced"]["scalingModifiers"]

    assert args == procfile()[worker]
    assert scaled["spec"]["scaleTargetRef"]["name"] == name
    # dramatiq's Redis broker keeps a queue's ready message ids in the list <namespace>:<queue>.
    assert {trigger["metadata"]["listName"] for trigger in triggers} == {f"{namespace}:{queue}" for queue in served}
    assert {trigger["name"] for trigger in triggers} == queues
    assert set(re.findall(r"[a-z0-9_]+", modifiers["formula"])) == queues
    assert set(modifiers["formula"].replace("\n", " ").split()) - queues == {"+"}
    for trigger in triggers:
        queue = trigger["metadata"]["listName"].removeprefix(f"{namespace}:")
        assert trigger["name"] == re.sub(r"[^a-z0-9_]", "_", queue)
        assert trigger["authenticationRef"]["name"] in of_kind("TriggerAuthentication")


def test_the_lists_keda_watches_are_where_the_broker_puts_ready_messages(settings: Settings) -> None:
    import dramatiq

    from workers.broker import build_broker

    namespace = f"deploy-{uuid.uuid4().hex[:8]}"
    broker = build_broker(settings.model_copy(update={"namespace": namespace}))
    watched = {trigger["metadata"]["listName"].split(":", 1)[1] for scaled in of_kind("ScaledObject").values()
               for trigger in scaled["spec"]["triggers"]}
    try:
        for queue in sorted(watched):
            broker.enqueue(dramatiq.Message(queue_name=queue, actor_name=queue, args=({"job": {}},), kwargs={},
                                            options={}))
        for queue in watched:
            assert broker.client.type(f"{namespace}:{queue}") == b"list", queue
            assert broker.client.llen(f"{namespace}:{queue}") == 1, queue
    finally:
        broker.client.delete(*broker.client.keys(f"{namespace}:*"))


def test_every_service_runs_from_the_shared_settings_and_secret_and_the_api_is_exposed() -> None:
    deployments, config, secrets = of_kind("Deployment"), of_kind("ConfigMap"), of_kind("Secret")
    commands = {container_of(deployment)["args"][0] for deployment in deployments.values()}

    assert commands == {args[0] for args in procfile().values()}
    for deployment in deployments.values():
        sources = container_of(deployment)["envFrom"]
        assert {source["configMapRef"]["name"] for source in sources if "configMapRef" in source} <= set(config)
        assert {source["secretRef"]["name"] for source in sources if "secretRef" in source} <= set(secrets)
        assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    [service] = of_kind("Service").values()
    api = deployments["framequeue-api"]
    assert service["spec"]["selector"] == api["spec"]["selector"]["matchLabels"]
    assert container_of(api)["readinessProbe"]["httpGet"]["path"] == "/dashboard/login"


def test_the_secret_is_placeholders_only_and_names_only_known_settings() -> None:
    [secret] = of_kind("Secret").values()
    [config] = of_kind("ConfigMap").values()
    known = {f"FRAMEQUEUE_{name.upper()}" for name in Settings.model_fields}
    others = {"REDIS_URL", "REDIS_PASSWORD", "REDIS_ADDRESS", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "HF_HOME"}

    assert set(secret["stringData"].values()) == {""}
    assert "data" not in secret
    assert set(secret["stringData"]) | set(config["data"]) <= known | others


def test_kustomize_lists_every_manifest() -> None:
    [kustomization] = documents(K8S / "kustomization.yaml")

    assert sorted(kustomization["resources"]) == sorted(path.name for path in K8S.glob("*.yaml")
                                                        if path.name != "kustomization.yaml")
