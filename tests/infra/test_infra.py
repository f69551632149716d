"""infra/ cannot run here (no Docker, no cluster): check its files with targeted rules instead.

The rules are the ones a reviewer would apply: pinned images, non-root, probes on the right
paths, names that refer to objects that exist, limits that fit the gateway's own settings.
"""

from __future__ import annotations

import re
import tomllib
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


def dockerfile_images(name: str) -> list[str]:
    """The images a Dockerfile builds FROM, ``${ARG}`` resolved to the ARG's default; stage
    names (``FROM wheel``) are not images."""
    text = (INFRA / name).read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.M))
    stages = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\w+)", text, re.M))
    refs = []
    for ref in re.findall(r"^FROM\s+(\S+)", text, re.M):
        ref = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], ref)
        if ref not in stages:
            refs.append(ref)
    return refs


def image_refs() -> list[str]:
    refs = dockerfile_images("Dockerfile") + dockerfile_images("engine.Dockerfile")
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
    refs = image_refs()
    assert "vllm/vllm-openai:v0.32.0" in refs
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
    config = one("ConfigMap", "tiergate-config")["data"]
    assert mounts["keys"] == config["TIERGATE_KEYS_DIR"]
    refs = {r.get("secretRef", r.get("configMapRef"))["name"] for r in gateway["envFrom"]}
    assert refs == {"tiergate-env", "tiergate-config"}
    one("Secret", "tiergate-env")
    keys = one("Secret", "tiergate-keys")["data"]
    assert {"log-ed25519.pem", "oauth-es256.pem", "link-hmac-1.key"} <= set(keys)


def test_service_and_ingress_point_at_the_gateway() -> None:
    deployment = one("Deployment")
    service = one("Service", "tiergate")
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
    assert one("ConfigMap", "tiergate-config")["data"]["TIERGATE_AUTO_MIGRATE"] == "false"


@pytest.mark.parametrize("doc", ["deploy.md"])
def test_deploy_doc_covers_operations(doc: str) -> None:
    text = (INFRA.parent / "docs" / doc).read_text()
    for topic in ("link-hmac-", "Secret", "backup", "rotat", "scal", "/readyz", "/metrics",
                  "tiergate engine serve", "tiergate engine keyset", "TIERGATE_ENGINES_FILE",
                  "--tensor-parallel-size", "--pipeline-parallel-size", "Ray",
                  "nvidia.com/gpu", "llama.cpp"):  # fmt: skip
        assert topic.lower() in text.lower(), topic


# -- the engine pool (issue 17) --------------------------------------------------------------

PLUGIN = "watermark.vllm_plugin:TiergateWatermarkLogitsProcessor"
KEYSET_ENV = "TIERGATE_WATERMARK_KEYSET"


def _compose_default(value: str) -> str:
    """A compose string with every ``${VAR:-default}`` replaced by its default."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def _flags(args: list[str]) -> dict[str, str]:
    """``--name=value`` arguments as a dict (the manifests write valued flags that way);
    a bare ``--flag`` maps to ""."""
    return dict([*a[2:].split("=", 1), ""][:2] for a in args if a.startswith("--"))


def test_engine_images_install_the_plugin_into_vllm_and_run_non_root() -> None:
    from gateway.cli._engine import PLUGIN as CLI_PLUGIN
    from gateway.cli._engine import VLLM_SERVER

    assert CLI_PLUGIN == PLUGIN
    text = (INFRA / "engine.Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\w+)", text, re.M)
    assert stages == ["wheel", "gpu", "cpu"]
    assert "build_watermark_wheel.py" in text.split("AS gpu", 1)[0]
    for stage in ("gpu", "cpu"):
        body = text.split(f"AS {stage}", 1)[1].split("\nFROM ", 1)[0]
        assert "--no-deps" in body, stage
        assert "tiergate_watermark-*.whl" in body, stage
        user = re.findall(r"^USER\s+(\S+)", body, re.M)
        assert user, stage
        assert user[-1].split(":")[0] not in {"root", "0"}, stage
        assert re.search(rf'^ENTRYPOINT \["python3?", "-m", "{VLLM_SERVER}"\]', body, re.M)
        assert "/health" in body
    cpu = text.split("AS cpu", 1)[1]
    # The engine env is installed from the project's own files, torch from the CPU index.
    assert "packaging/vllm" in cpu
    assert "constraints.txt" in cpu
    assert "download.pytorch.org/whl/cpu" in cpu
    assert "pip uninstall -y torchvision torchaudio torchcodec" in cpu


def test_compose_engine_is_wired_to_the_gateway() -> None:
    compose = yaml.safe_load((INFRA / "compose.yaml").read_text())
    services = compose["services"]
    gpu, cpu, pull, gateway = (services[n] for n in ("engine", "engine-cpu", "engine-pull",
                                                      "gateway"))  # fmt: skip
    engines = tomllib.loads((INFRA / "engines.toml").read_text())["engine"]
    (entry,) = engines
    env = gateway["environment"]
    # The gateway reads the engines file where compose mounts it.
    (mounted,) = [c for c in gateway["configs"] if c["source"] == "engines"]
    assert mounted["target"] == env["TIERGATE_ENGINES_FILE"]
    assert compose["configs"]["engines"]["file"] == "./engines.toml"
    # The gateway holds the engine's API key under the name the engines file gives.
    assert entry["api_key_env"] in env
    key_var = re.search(r"\$\{(\w+)", env[entry["api_key_env"]])
    assert key_var is not None
    for name, engine in (("engine", gpu), ("engine-cpu", cpu)):
        flags = {k: _compose_default(v) for k, v in _flags(engine["command"]).items()}
        assert flags["logits-processors"] == PLUGIN, name
        # The engines file names the model as the engine serves it, at its address.
        assert flags["served-model-name"] == entry["model"], name
        (url,) = entry["urls"]
        host, port = url.removeprefix("http://").split(":")
        assert host in engine["networks"]["default"]["aliases"], name
        assert port == flags["port"], name
        assert flags["host"] == "0.0.0.0", name  # reached over compose's network
        assert re.search(rf"\$\{{{key_var.group(1)}\b", engine["environment"]["VLLM_API_KEY"])
        # The key set reaches vLLM as a compose secret, named by path.
        assert engine["environment"][KEYSET_ENV] == "/run/secrets/engine_keys", name
        assert engine["secrets"] == ["engine_keys"], name
        # It serves what engine-pull verified into the shared volume, and only after that.
        assert engine["depends_on"]["engine-pull"]["condition"] == (
            "service_completed_successfully"
        )
        (models,) = [v for v in engine["volumes"] if v.startswith("engine-models:")]
        _, engine_mount, mode = models.split(":")
        assert mode == "ro"
        assert flags["model"].startswith(engine_mount + "/")
        assert "/health" in " ".join(engine["healthcheck"]["test"])
        assert engine["build"]["dockerfile"] == "infra/engine.Dockerfile"
    assert compose["secrets"]["engine_keys"]["file"] == "./secrets/engine-keys.json"
    assert (INFRA / "secrets" / ".gitignore").read_text().splitlines()[-2:] == ["*", "!.gitignore"]
    # The two variants: GPU reserved on one, the CPU KV cache sized on the other.
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia"
    assert device["capabilities"] == ["gpu"]
    assert "reservations" not in cpu["deploy"]["resources"]
    assert "VLLM_CPU_KVCACHE_SPACE" in cpu["environment"]
    assert (gpu["build"]["target"], cpu["build"]["target"]) == ("gpu", "cpu")
    assert (gpu["profiles"], cpu["profiles"]) == (["gpu"], ["cpu"])
    # engine-pull verifies the tier into the same volume, under the same folder name.
    assert pull["command"][0] == "pull"
    pull_flags = _flags(pull["command"])
    (pull_volume,) = [v for v in pull["volumes"] if v.startswith("engine-models:")]
    pull_mount = pull_volume.split(":")[1]
    model_in_engine = _flags(gpu["command"])["model"]
    assert pull_flags["out"].removeprefix(pull_mount) == model_in_engine.removeprefix("/models")
    served = _compose_default(_flags(gpu["command"])["served-model-name"])
    assert served == f"{_compose_default(pull['command'][1])}:" + _compose_default(
        pull_flags["tier"]
    )
    assert pull["depends_on"]["gateway"]["condition"] == "service_healthy"
    assert pull["environment"]["TIERGATE_GATEWAY"] == "http://gateway:8000"


def _json_patch(doc: Any, ops: list[dict[str, Any]]) -> Any:
    """The JSON-patch subset the overlays use (RFC 6902 add / replace / remove)."""
    import copy

    doc = copy.deepcopy(doc)
    for op in ops:
        *parents, last = [
            p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]
        ]
        target = doc
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if op["op"] == "remove":
            assert last in target, op["path"]
            del target[last]
        elif isinstance(target, list) and last == "-":
            target.append(op["value"])
        else:
            if op["op"] == "replace":
                assert last in target, op["path"]
            target[last] = op["value"]
    return doc


def _engine_pool(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    def find(kind: str, name: str) -> dict[str, Any]:
        (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
        return doc

    return (
        find("StatefulSet", "tiergate-engine"),
        find("Service", "tiergate-engine"),
        find("ConfigMap", "tiergate-engines"),
        find("ConfigMap", "tiergate-engine-config"),
    )


def _check_engine_pool(docs: list[dict[str, Any]], *, gpu: bool) -> None:
    sts, service, engines_map, config = _engine_pool(docs)
    pod = sts["spec"]["template"]
    spec = pod["spec"]
    _check_pod(spec)
    (vllm,) = spec["containers"]
    (pull,) = spec["initContainers"]
    data = config["data"]
    # Each replica has an address of its own, and the engines file lists every one of them.
    assert service["spec"]["clusterIP"] == "None"
    assert sts["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert sts["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    (port,) = service["spec"]["ports"]
    (container_port,) = vllm["ports"]
    assert port["targetPort"] == container_port["name"]
    (entry,) = tomllib.loads(engines_map["data"]["engines.toml"])["engine"]
    name, svc = sts["metadata"]["name"], service["metadata"]["name"]
    assert entry["urls"] == [
        f"http://{name}-{i}.{svc}:{port['port']}" for i in range(sts["spec"]["replicas"])
    ]
    # The model the gateway routes is the one the engine serves and the one it pulls.
    assert entry["model"] == data["TIERGATE_ENGINE_MODEL"]
    assert entry["model"] == f"{data['TIERGATE_ENGINE_RELEASE']}:{data['TIERGATE_ENGINE_TIER']}"
    flags = _flags(vllm["args"])
    assert flags["served-model-name"] == "$(TIERGATE_ENGINE_MODEL)"
    assert flags["logits-processors"] == PLUGIN
    assert flags["port"] == str(container_port["containerPort"])
    defined = set(data) | {e["name"] for e in vllm["env"]}
    for container in (vllm, pull):
        for ref in re.findall(r"\$\((\w+)\)", " ".join(container["args"])):
            assert ref in defined, ref
    # The key set: a Secret volume, its file named to vLLM by path.
    env = {e["name"]: e for e in vllm["env"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["name"]: m for m in vllm["volumeMounts"]}
    keys_mount = mounts["engine-keys"]
    assert keys_mount["readOnly"] is True
    secret_name = volumes["engine-keys"]["secret"]["secretName"]
    secret = one("Secret", secret_name)
    (key_file,) = secret["data"]
    assert env[KEYSET_ENV]["value"] == f"{keys_mount['mountPath']}/{key_file}"
    assert volumes["engine-keys"]["secret"]["defaultMode"] == 0o400
    # The engine's API key: the gateway holds the same value under the engines file's name.
    engine_key = env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"]
    assert engine_key["key"] in one("Secret", engine_key["name"])["stringData"]
    assert entry["api_key_env"] in one("Secret", "tiergate-env")["stringData"]
    # vLLM loads only what the pull init container verified, read-only.
    assert pull["args"][0] == "pull"
    gateway_image = one("Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert pull["image"] == gateway_image
    pull_mounts = {m["name"]: m["mountPath"] for m in pull["volumeMounts"]}
    out = _flags(pull["args"])["out"]
    assert out.removeprefix(pull_mounts["models"]) == flags["model"].removeprefix(
        mounts["models"]["mountPath"]
    )
    assert mounts["models"]["readOnly"] is True
    assert data["TIERGATE_GATEWAY"] == f"http://{one('Service', 'tiergate')['metadata']['name']}"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert vllm[probe]["httpGet"] == {"path": "/health", "port": "http"}, probe
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    assert mounts["dshm"]["mountPath"] == "/dev/shm"
    has_gpu = ["nvidia.com/gpu" in vllm["resources"][k] for k in ("requests", "limits")]
    assert has_gpu == [gpu, gpu]
    assert vllm["image"].endswith("-cuda" if gpu else "-cpu")
    assert ("tolerations" in spec) is gpu
    if not gpu:
        assert "VLLM_CPU_KVCACHE_SPACE" in env


def test_kubernetes_engine_pool_on_gpus_is_wired_to_the_gateway() -> None:
    docs = k8s_docs()
    _check_engine_pool(docs, gpu=True)
    # The gateway reads the engines file from the mounted ConfigMap.
    deployment = one("Deployment")
    spec = deployment["spec"]["template"]["spec"]
    (gateway,) = spec["containers"]
    path = Path(one("ConfigMap", "tiergate-config")["data"]["TIERGATE_ENGINES_FILE"])
    mounts = {m["name"]: m["mountPath"] for m in gateway["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    (name,) = [n for n, v in volumes.items() if v.get("configMap", {}).get("name") == (
        "tiergate-engines"
    )]  # fmt: skip
    assert mounts[name] == str(path.parent)
    assert path.name in one("ConfigMap", "tiergate-engines")["data"]
    policy = one("NetworkPolicy", "tiergate-engine")
    (rule,) = policy["spec"]["ingress"]
    (source,) = rule["from"]
    assert source["podSelector"]["matchLabels"].items() <= (
        deployment["spec"]["template"]["metadata"]["labels"].items()
    )


def test_kubernetes_cpu_overlay_is_the_same_pool_without_gpus() -> None:
    overlay = yaml.safe_load((K8S / "engine-cpu" / "kustomization.yaml").read_text())
    assert overlay["resources"] == [".."]
    docs = k8s_docs()
    for patch in overlay["patches"]:
        target = patch["target"]
        ops = yaml.safe_load(patch["patch"])
        docs = [
            _json_patch(d, ops)
            if (d["kind"], d["metadata"]["name"]) == (target["kind"], target["name"])
            else d
            for d in docs
        ]
    _check_engine_pool(docs, gpu=False)
