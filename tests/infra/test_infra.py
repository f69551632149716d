"""infra/ cannot run here (no Docker, no cluster): check its files with targeted rules instead.

The rules are the ones a reviewer would apply: pinned images, non-root, probes on the right
paths, names that refer to objects that exist, limits that fit the gateway's own settings.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import Settings

INFRA = Path(__file__).resolve().parents[2] / "infra"
K8S = INFRA / "k8s"


def k8s_docs() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in k8s_docs() if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def image_refs() -> list[str]:
    refs = re.findall(r"^FROM\s+(\S+)", (INFRA / "Dockerfile").read_text(), re.M)
    compose = yaml.safe_load((INFRA / "compose.yaml").read_text())
    refs += [s["image"] for s in compose["services"].values() if "image" in s]
    for doc in k8s_docs():
        spec = doc.get("spec", {}).get("template", {}).get("spec", {})
        refs += [c["image"] for c in spec.get("containers", []) + spec.get("initContainers", [])]
    return refs


# -- Dockerfile ----------------------------------------------------------------------------


def test_dockerfile_is_multistage_non_root_with_a_healthcheck() -> None:
    text = (INFRA / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\w+)", text, re.M)
    assert stages == ["build", "runtime"]
    runtime = text.split("AS runtime", 1)[1]
    assert "COPY --from=build /opt/venv /opt/venv" in runtime
    users = re.findall(r"^USER\s+(\S+)", runtime, re.M)
    assert users, "the runtime stage must switch user"
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert re.search(r"^HEALTHCHECK .*\n?.*CMD", runtime, re.M)
    assert "/healthz" in runtime
    # torch from the CPU index, before the project, so no CUDA wheel is ever resolved.
    torch_at = text.index("download.pytorch.org/whl/cpu")
    assert torch_at < text.index("pip install .")
    assert "--no-cache-dir" in text or "PIP_NO_CACHE_DIR=1" in text


def test_every_image_is_pinned_never_latest() -> None:
    pinned = re.compile(r"^[\w.\-/:${}]+:[\w.\-]+$")
    arg = re.search(r"^ARG PYTHON_IMAGE=(\S+)", (INFRA / "Dockerfile").read_text(), re.M)
    assert arg is not None
    refs = [arg.group(1) if r == "${PYTHON_IMAGE}" else r for r in image_refs()]
    for ref in refs:
        assert pinned.match(ref), f"unpinned image {ref}"
        assert not ref.endswith(":latest"), ref


# -- compose -------------------------------------------------------------------------------


def test_compose_has_replicas_postgres_object_store_and_proxy() -> None:
    compose = yaml.safe_load((INFRA / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "minio", "migrate", "gateway", "proxy"} <= set(services)
    gateway = services["gateway"]
    assert gateway["deploy"]["replicas"] >= 2
    assert "ports" not in gateway  # reached only through the proxy
    env = gateway["environment"]
    assert env["TIERGATE_STORAGE_BACKEND"] == "s3"
    assert env["TIERGATE_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert env["TIERGATE_AUTO_MIGRATE"] == "false"
    assert gateway["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert gateway["read_only"] is True
    assert gateway["cap_drop"] == ["ALL"]
    assert "/readyz" in " ".join(gateway["healthcheck"]["test"])
    # Longer than uvicorn's graceful shutdown, so in-flight downloads finish.
    assert int(gateway["stop_grace_period"].rstrip("s")) > 30
    for name, service in services.items():
        assert "healthcheck" in service or service.get("restart") == "no" or name == "proxy"
    # Settings accept the environment the replicas get (placeholders filled in).
    filled = {
        k.removeprefix("TIERGATE_").lower(): re.sub(r"\$\{[^}]+\}", "x", str(v))
        for k, v in env.items()
        if k.startswith("TIERGATE_")
    }
    Settings(**filled)


def test_proxy_terminates_tls_limits_bodies_and_streams_downloads() -> None:
    conf = (INFRA / "nginx" / "nginx.conf").read_text()
    assert "listen 443 ssl" in conf
    assert "ssl_certificate " in conf
    limits = [int(m) for m in re.findall(r"client_max_body_size (\d+)m", conf)]
    settings = Settings()
    assert min(limits) << 20 == settings.max_body_bytes
    assert max(limits) << 20 > settings.max_upload_chunk_bytes  # a full chunk + headers fits
    assert "proxy_buffering off" in conf
    assert "proxy_read_timeout 3600s" in conf
    assert re.search(r"location = /metrics \{\s*return 404;", conf)
    assert conf.count("{") == conf.count("}")


# -- Kubernetes ----------------------------------------------------------------------------


def test_every_manifest_has_the_basics() -> None:
    docs = k8s_docs()
    assert {d["kind"] for d in docs} >= {
        "Deployment", "Service", "Ingress", "Secret", "Job", "ConfigMap",
    }  # fmt: skip
    for doc in docs:
        assert doc["apiVersion"], doc
        assert doc["metadata"]["name"], doc
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml") if p.stem != "kustomization")


def _check_pod(spec: dict[str, Any]) -> None:
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert spec["automountServiceAccountToken"] is False
    for container in spec["containers"] + spec.get("initContainers", []):
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"]["drop"] == ["ALL"]
        assert {"cpu", "memory"} <= set(container["resources"]["limits"])


def test_deployment_probes_security_and_graceful_shutdown() -> None:
    deployment = one("Deployment")
    assert deployment["spec"]["replicas"] >= 2
    pod = deployment["spec"]["template"]
    assert (
        deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    )
    spec = pod["spec"]
    _check_pod(spec)
    (gateway,) = spec["containers"]
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert spec["terminationGracePeriodSeconds"] > 30
    # Keys come from the shared Secret, through the init container, into every replica.
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["secret-keys"]["secret"]["secretName"] == "tiergate-keys"
    mounts = {m["name"]: m["mountPath"] for m in gateway["volumeMounts"]}
    config = one("ConfigMap")["data"]
    assert mounts["keys"] == config["TIERGATE_KEYS_DIR"]
    refs = {r.get("secretRef", r.get("configMapRef"))["name"] for r in gateway["envFrom"]}
    assert refs == {"tiergate-env", one("ConfigMap")["metadata"]["name"]}
    one("Secret", "tiergate-env")
    keys = one("Secret", "tiergate-keys")["data"]
    assert {"log-ed25519.pem", "oauth-es256.pem", "link-hmac-1.key"} <= set(keys)


def test_service_and_ingress_point_at_the_gateway() -> None:
    deployment = one("Deployment")
    service = one("Service")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    port_names = {
        p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert service["spec"]["ports"][0]["targetPort"] in port_names
    ingress = one("Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"]["name"] == service["spec"]["ports"][0]["name"]
    assert ingress["spec"]["tls"]
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"


def test_migration_job_runs_db_upgrade() -> None:
    job = one("Job")
    spec = job["spec"]["template"]["spec"]
    _check_pod(spec)
    (container,) = spec["containers"]
    assert container["args"] == ["db", "upgrade"]
    assert spec["restartPolicy"] in {"OnFailure", "Never"}
    deployment_image = one("Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert container["image"] == deployment_image  # migrate with the version you deploy
    assert one("ConfigMap")["data"]["TIERGATE_AUTO_MIGRATE"] == "false"


@pytest.mark.parametrize("doc", ["deploy.md"])
def test_deploy_doc_covers_operations(doc: str) -> None:
    text = (INFRA.parent / "docs" / doc).read_text()
    for topic in ("link-hmac-", "Secret", "backup", "rotat", "scal", "/readyz", "/metrics"):
        assert topic.lower() in text.lower(), topic
