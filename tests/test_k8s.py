"""The Kubernetes manifests (k8s/), the Grafana dashboard and the Dockerfile.

Each overlay is rendered by :func:`render`, a small kustomize written here for the features the
manifests use (resources, namespace, labels, images, configMapGenerator without name hashes); it
refuses anything else, so it cannot silently render differently from kustomize. Its output is
compared with real kustomize builds: kustomize's own Go code from the pykustomize wheel (which
.ci/run installs) and ``kubectl kustomize`` where a kubectl with kustomize 5 is on PATH. Every
rendered object is validated with ``kubernetes-validate`` (strict: unknown fields are errors)
against the schemas of the Kubernetes versions in :data:`K8S_VERSIONS`, and the security
properties the issue asks for are checked on the rendered objects, as they would be applied.
"""

from __future__ import annotations

import asyncio
import copy
import fnmatch
import ipaddress
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from resolver.config import load_config

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
#: The overlays that run the resolver.
OVERLAYS = ("sidecar", "node-unenforced")
#: Every directory a user applies: the overlays, the former name of node-unenforced (the same
#: objects), the cluster-wide admission policy (k8s/admission, applied on its own) and the
#: node-level collection of the forensic log (k8s/logging).
DIRECTORIES = {**{name: K8S / "overlays" / name for name in OVERLAYS},
               "node": K8S / "overlays" / "node", "admission": K8S / "admission",
               "logging": K8S / "logging"}
#: The Kubernetes versions whose schemas every object must pass: 1.30, the oldest still
#: commonly run with native sidecars on by default (beta since 1.29), and 1.33, where they are GA.
K8S_VERSIONS = ("1.30", "1.33")

RESOLVER_UID = 10053
METRICS_PORT = 9153
CONFIG_DIR = "/etc/dnssec-sidecar"
ENTRYPOINT = ["dnssec-sidecar", "serve", "--config", f"{CONFIG_DIR}/config.yaml"]
CONFIG_MAP = "dnssec-sidecar-config"


# --- a minimal kustomize ------------------------------------------------------------------------

_SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "labels", "images",
              "configMapGenerator", "generatorOptions"}
#: Kinds the namespace transformer leaves alone (cluster-scoped).
_CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass",
                   "CustomResourceDefinition", "StorageClass", "PersistentVolume",
                   "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}


class RenderError(Exception):
    pass


def _inside(root: Path, relative: str) -> Path:
    """``relative`` under ``root``: kustomize's default load restrictor refuses files outside
    the kustomization's own directory."""
    path = (root / relative).resolve()
    if path != root.resolve() and root.resolve() not in path.parents:
        raise RenderError(f"{root}: {relative} is outside the kustomization root")
    return path


def _generate(root: Path, spec: dict[str, Any]) -> dict[str, Any]:
    unknown = set(spec) - {"name", "behavior", "files", "literals"}
    if unknown:
        raise RenderError(f"{root}: configMapGenerator keys not supported: {sorted(unknown)}")
    data: dict[str, str] = {}
    for entry in spec.get("files", []):
        key, _, source = entry.rpartition("=")
        path = _inside(root, source)
        data[key or path.name] = path.read_text(encoding="utf-8")
    for entry in spec.get("literals", []):
        key, _, value = entry.partition("=")
        data[key] = value
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": spec["name"]},
            "data": data}


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    if obj["kind"] == "Pod":
        return obj.get("spec")
    if obj["kind"] in ("Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job"):
        return obj["spec"]["template"]["spec"]
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def _set_image(image: str, rules: list[dict[str, Any]]) -> str:
    match = re.fullmatch(r"(?P<name>[^@]+?)(?::(?P<tag>[^:/@]+))?(?:@(?P<digest>.+))?", image)
    assert match, image
    for rule in rules:
        unknown = set(rule) - {"name", "newName", "newTag"}
        if unknown:
            raise RenderError(f"images keys not supported: {sorted(unknown)}")
        if rule["name"] == match["name"]:
            name = rule.get("newName", match["name"])
            tag = rule.get("newTag", match["tag"])
            return name + (f":{tag}" if tag else "")
    return image


def render(directory: Path) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize DIRECTORY`` would print, in no particular order."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - _SUPPORTED
    if unknown:
        raise RenderError(f"{directory}: kustomization keys not supported: {sorted(unknown)}")
    if kustomization.get("kind", "Kustomization") != "Kustomization":
        raise RenderError(f"{directory}: not a Kustomization")
    objects: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        if path.is_dir():
            objects += render(path)
        else:
            objects += [obj for obj in yaml.safe_load_all(_inside(directory, entry).read_text())
                        if obj]
    options = kustomization.get("generatorOptions", {})
    if kustomization.get("configMapGenerator") and options != {"disableNameSuffixHash": True}:
        raise RenderError(f"{directory}: only generatorOptions: {{disableNameSuffixHash: true}} "
                          "is supported (no name hashes)")
    for spec in kustomization.get("configMapGenerator", []):
        generated = _generate(directory, spec)
        same = [obj for obj in objects if obj["kind"] == "ConfigMap"
                and obj["metadata"]["name"] == spec["name"]]
        behavior = spec.get("behavior", "create")
        if behavior == "create":
            if same:
                raise RenderError(f"{directory}: ConfigMap {spec['name']} already exists")
            objects.append(generated)
        elif behavior in ("replace", "merge"):
            if len(same) != 1:
                raise RenderError(f"{directory}: no ConfigMap {spec['name']} to {behavior}")
            if behavior == "replace":
                same[0]["data"] = generated["data"]
            else:
                same[0].setdefault("data", {}).update(generated["data"])
        else:
            raise RenderError(f"{directory}: configMapGenerator behavior {behavior!r}")
    if "namespace" in kustomization:
        for obj in objects:
            if obj["kind"] not in _CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = kustomization["namespace"]
    for label in kustomization.get("labels", []):
        if set(label) != {"pairs"}:
            raise RenderError(f"{directory}: labels: only pairs (no selectors or templates)")
        for obj in objects:
            obj["metadata"].setdefault("labels", {}).update(label["pairs"])
    for obj in objects:
        pod = _pod_spec(obj)
        for container in (pod or {}).get("initContainers", []) + (pod or {}).get("containers",
                                                                                 []):
            container["image"] = _set_image(container["image"], kustomization.get("images", []))
    return objects


def _key(obj: dict[str, Any]) -> tuple[str, str, str]:
    return obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


_RENDERED: dict[str, list[dict[str, Any]]] = {}


def rendered(directory: str) -> list[dict[str, Any]]:
    """The objects of one of :data:`DIRECTORIES`."""
    if directory not in _RENDERED:
        _RENDERED[directory] = render(DIRECTORIES[directory])
    return copy.deepcopy(_RENDERED[directory])


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [obj for obj in objects if obj["kind"] == kind
             and (name is None or obj["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {[_key(o) for o in found]}"
    return found[0]


def container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    found = [c for c in pod.get("initContainers", []) + pod["containers"] if c["name"] == name]
    assert len(found) == 1, name
    return found[0]


# --- rendering, schemas ----------------------------------------------------------------------

@pytest.mark.parametrize("overlay", DIRECTORIES)
def test_overlay_renders_uniquely_named_objects(overlay):
    objects = rendered(overlay)
    keys = [_key(obj) for obj in objects]
    assert len(keys) == len(set(keys)), keys
    assert all(obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "dnssec-sidecar"
               for obj in objects)


#: Why a reference kustomize is missing, by name (the skip reason of its comparison).
_NO_KUBECTL = ("no `kubectl` with kustomize 5 or later on PATH (Debian 12's kubernetes-client "
               "is kubectl 1.20, whose kustomize 2.0.3 refuses the overlays' `labels:`)")
_NO_PYKUSTOMIZE = ("pykustomize (kustomize's Go API built as a library, on PyPI) is not "
                   "installed: .ci/run installs it with `pip install --no-deps "
                   "--ignore-requires-python pykustomize==0.1.4`")


def _kubectl_kustomize(directory: Path) -> str:
    """``kubectl kustomize DIRECTORY``'s output, or :func:`pytest.skip`."""
    if not shutil.which("kubectl"):
        pytest.skip(_NO_KUBECTL)
    try:
        version = subprocess.run(["kubectl", "version", "--client"], capture_output=True,
                                 text=True, timeout=60, check=False).stdout
    except subprocess.TimeoutExpired:
        pytest.skip("`kubectl version --client` did not answer within 60 s")
    found = re.search(r"Kustomize Version: v(\d+)\.", version)
    if not found or int(found[1]) < 5:  # `labels:` and today's output need kustomize 5
        pytest.skip(_NO_KUBECTL)
    done = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True,
                          text=True, timeout=120, check=False)
    if done.returncode != 0 and "unknown command" in done.stderr:
        pytest.skip(_NO_KUBECTL)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _pykustomize(directory: Path) -> str:
    """The same build through kustomize's own Go code (``krusty``, as ``kustomize build``
    runs it), which the pykustomize wheel ships as a shared library; or :func:`pytest.skip`."""
    try:
        import pykustomize
    except ImportError:
        pytest.skip(_NO_PYKUSTOMIZE)
    return asyncio.run(pykustomize.build(str(directory))).yaml


#: Independent renderers: real kustomize builds, each compared with :func:`render`.
REFERENCES = {"kubectl": _kubectl_kustomize, "pykustomize": _pykustomize}


@pytest.mark.parametrize("reference", REFERENCES)
@pytest.mark.parametrize("overlay", DIRECTORIES)
def test_renderer_agrees_with_kustomize(overlay, reference):
    theirs = [obj for obj in yaml.safe_load_all(REFERENCES[reference](DIRECTORIES[overlay]))
              if obj]
    ours = rendered(overlay)
    assert sorted(map(_key, theirs)) == sorted(map(_key, ours))
    by_key = {_key(obj): obj for obj in theirs}
    for obj in ours:
        assert obj == by_key[_key(obj)], _key(obj)


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overlay", DIRECTORIES)
def test_every_object_passes_the_kubernetes_schema_strictly(overlay, version):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for obj in rendered(overlay):
        try:
            validated = kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(map(str, exc.path))
            pytest.fail(f"{_key(obj)} against {version}: {path}: {exc.message}")
        assert validated == version


def test_renderer_refuses_what_it_does_not_implement(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("resources: []\npatches: []\n")
    with pytest.raises(RenderError, match="patches"):
        render(tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        "configMapGenerator: [{name: x, files: [../escape.txt]}]\n"
        "generatorOptions: {disableNameSuffixHash: true}\n")
    with pytest.raises(RenderError, match="outside"):
        render(tmp_path)


# --- the resolver's configuration in the ConfigMap ------------------------------------------------

def _config(overlay: str, tmp_path: Path):
    config_map = one(rendered(overlay), "ConfigMap", CONFIG_MAP)
    assert set(config_map["data"]) == {"config.yaml"}
    path = tmp_path / "config.yaml"
    path.write_text(config_map["data"]["config.yaml"])
    return load_config(str(path))  # the resolver's own parser: unknown keys are errors


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_configmap_config_is_accepted_by_the_resolver(overlay, tmp_path):
    config = _config(overlay, tmp_path)
    assert config.log.path == "-"  # the forensic log to stdout, for the cluster's log collection
    assert (config.metrics.listen.host, config.metrics.listen.port) == ("0.0.0.0", METRICS_PORT)
    assert config.metrics.enabled
    assert config.services, "a policy example"
    assert any(str(f.zone) == "cluster.local." for f in config.forward)


def test_sidecar_config_policy_example(tmp_path):
    config = _config("sidecar", tmp_path)
    assert [str(e) for e in config.listen] == ["127.0.0.1:53"]
    (service,) = config.services
    rules = {str(rule.zone): rule for rule in service.allow}
    assert rules["example.com."].require == "secure"
    assert rules["cluster.local."].require == "insecure-ok"
    assert rules["cluster.local."].allow_private
    assert [str(e) for e in service.listeners] == ["127.0.0.1:53"]
    assert config.default_service.allow == ()  # fail closed


def test_node_config_tells_services_apart_by_source_prefix(tmp_path):
    config = _config("node-unenforced", tmp_path)
    assert [str(e) for e in config.listen] == ["169.254.20.10:53"]
    assert len(config.services) >= 2
    for service in config.services:
        assert service.clients and not service.listeners, service.name
    prefixes = [p for s in config.services for p in s.clients]
    assert not any(a.overlaps(b) for i, a in enumerate(prefixes) for b in prefixes[i + 1:])


# --- pods -------------------------------------------------------------------------------------

def _port(c: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in c.get("ports", []) if p.get("name") == port]
    return number


def _check_resolver_container(c: dict[str, Any], host_network: bool = False) -> None:
    assert c["image"].split(":")[0] == "dnssec-sidecar"
    assert [c["image"].split(":")[0]] + c["args"] == ENTRYPOINT, "the image's entry point"
    sc = c["securityContext"]
    assert sc["runAsUser"] == RESOLVER_UID and sc["runAsGroup"] == RESOLVER_UID
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
    assert "privileged" not in sc or sc["privileged"] is False
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][kind]), kind
    if host_network:  # a declared port is a hostPort there: no surge pod beside the old one
        assert "ports" not in c
    else:
        ports = {(p["containerPort"], p.get("protocol", "TCP")) for p in c["ports"]}
        assert {(53, "UDP"), (53, "TCP"), (METRICS_PORT, "TCP")} <= ports
        assert {p["name"]: p["containerPort"] for p in c["ports"]}["metrics"] == METRICS_PORT
    probes = {kind: c[kind] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    for kind, probe in probes.items():
        assert _port(c, probe["httpGet"]["port"]) == METRICS_PORT, kind
        assert "host" not in probe["httpGet"], kind
        assert probe["timeoutSeconds"] >= 1 and probe["failureThreshold"] >= 1, kind
    assert probes["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert probes["livenessProbe"]["httpGet"]["path"] == "/healthz"
    (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == CONFIG_DIR]
    assert "subPath" not in mount, "a subPath mount never sees ConfigMap updates: no reload"
    assert mount["readOnly"] is True


def _check_pod_basics(template: dict[str, Any]) -> dict[str, Any]:
    pod = template["spec"]
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(METRICS_PORT)
    assert annotations["prometheus.io/path"] == "/metrics"
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    volumes = {v["name"]: v for v in pod["volumes"]}
    resolver = container(pod, "dnssec-sidecar")
    (mount,) = [m for m in resolver["volumeMounts"] if m["mountPath"] == CONFIG_DIR]
    assert volumes[mount["name"]]["configMap"]["name"] == CONFIG_MAP
    for c in pod.get("initContainers", []) + pod["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False, c["name"]
        assert sc["readOnlyRootFilesystem"] is True, c["name"]
        assert sc["capabilities"]["drop"] == ["ALL"], c["name"]
        assert "privileged" not in sc, c["name"]
        assert c["resources"]["limits"]["memory"], c["name"]
    return pod


def _check_script_delivery(objects, pod, init_name: str, script: Path) -> dict[str, Any]:
    """The init container runs ``script`` byte for byte, from the ConfigMap generated from it,
    as root with NET_ADMIN and no other capability but NET_RAW, and exits (no restartPolicy)."""
    init = container(pod, init_name)
    assert init["image"].split(":")[0] == "dnssec-sidecar-netinit"
    assert "restartPolicy" not in init, "a plain init container: it runs to completion"
    sc = init["securityContext"]
    assert sc["runAsUser"] == 0 and sc["runAsNonRoot"] is False
    assert set(sc["capabilities"]["add"]) <= {"NET_ADMIN", "NET_RAW"}
    assert "NET_ADMIN" in sc["capabilities"]["add"]
    assert init["command"][0] == "/bin/sh"
    run_path = init["command"][1]
    (mount,) = [m for m in init["volumeMounts"] if run_path.startswith(m["mountPath"] + "/")]
    volume = {v["name"]: v for v in pod["volumes"]}[mount["name"]]
    config_map = one(objects, "ConfigMap", volume["configMap"]["name"])
    key = run_path[len(mount["mountPath"]) + 1:]
    assert config_map["data"][key] == script.read_text(), "the very script in the repository"
    return {e["name"]: e["value"] for e in init.get("env", [])}


def test_sidecar_deployment_runs_the_resolver_as_a_hardened_native_sidecar():
    objects = rendered("sidecar")
    deployment = one(objects, "Deployment")
    pod = _check_pod_basics(deployment["spec"]["template"])
    assert pod["securityContext"]["runAsNonRoot"] is True
    inits = [c["name"] for c in pod["initContainers"]]
    assert inits == ["dns-capture", "dnssec-sidecar"], "capture first, then the resolver"
    resolver = container(pod, "dnssec-sidecar")
    assert resolver["restartPolicy"] == "Always", "a native sidecar"
    _check_resolver_container(resolver)
    assert pod["dnsPolicy"] == "None"
    namespace = deployment["metadata"]["namespace"]
    assert pod["dnsConfig"]["nameservers"] == ["127.0.0.1"]
    assert pod["dnsConfig"]["searches"] == [f"{namespace}.svc.cluster.local",
                                            "svc.cluster.local", "cluster.local"]
    assert {"name": "ndots", "value": "2"} in pod["dnsConfig"]["options"]
    assert "hostNetwork" not in pod
    for workload in pod["containers"]:
        sc = workload["securityContext"]
        assert sc["runAsNonRoot"] is True
        assert sc["runAsUser"] != RESOLVER_UID, "the resolver's UID is exempt from capture"
        assert sc["capabilities"] == {"drop": ["ALL"]}, "no NET_ADMIN: cannot undo the capture"
        assert "restartPolicy" not in workload


def test_sidecar_capture_init_container_runs_the_repository_script(tmp_path):
    objects = rendered("sidecar")
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    env = _check_script_delivery(objects, pod, "dns-capture", K8S / "capture" / "dns-capture.sh")
    resolver = container(pod, "dnssec-sidecar")
    assert int(env["RESOLVER_UID"]) == resolver["securityContext"]["runAsUser"]
    # What is captured goes to 127.0.0.1:53, which the resolver listens on.
    config = _config("sidecar", tmp_path)
    assert "127.0.0.1:53" in [str(e) for e in config.listen]
    # iptables' lock file needs a writable /run on the read-only root filesystem.
    init = container(pod, "dns-capture")
    assert any(m["mountPath"] == "/run" for m in init["volumeMounts"])


def test_sidecar_network_policy_limits_egress_to_what_the_resolver_needs():
    objects = rendered("sidecar")
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    policy = one(objects, "NetworkPolicy")
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Egress"]
    assert spec["podSelector"]["matchLabels"].items() <= pod_labels.items()
    dns = {("UDP", 53), ("TCP", 53)}
    rules = spec["egress"]
    to_kube_dns = [r for r in rules if any(
        peer.get("podSelector", {}).get("matchLabels") == {"k8s-app": "kube-dns"}
        for peer in r.get("to", []))]
    assert to_kube_dns and {(p["protocol"], p["port"]) for p in to_kube_dns[0]["ports"]} == dns
    anywhere = [r for r in rules if {peer.get("ipBlock", {}).get("cidr") for peer in r["to"]}
                == {"0.0.0.0/0", "::/0"}]
    assert len(anywhere) == 1
    assert {(p["protocol"], p["port"]) for p in anywhere[0]["ports"]} == dns
    for rule in rules:
        assert rule.get("to"), "no rule open to every destination"
        assert rule.get("ports"), "no rule open to every port"
        assert all(p["port"] != 853 for p in rule["ports"]), "no DNS over TLS around the resolver"
        if any(p["port"] == 443 for p in rule["ports"]):
            # Any HTTPS server may answer DNS over HTTPS: named ranges, never the world.
            for peer in rule["to"]:
                if "ipBlock" in peer:
                    assert ipaddress.ip_network(peer["ipBlock"]["cidr"]).prefixlen >= 16, peer


def test_node_is_the_former_name_of_node_unenforced():
    assert rendered("node") == rendered("node-unenforced")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_configs_refuse_with_nxdomain(overlay, tmp_path):
    """On REFUSED musl stops walking the search list and glibc asks again: NXDOMAIN instead."""
    config = _config(overlay, tmp_path)
    for service in (*config.services, config.default_service):
        assert service.refuse_with == "nxdomain", service.name


def test_node_daemonset_listens_on_the_link_local_address(tmp_path):
    objects = rendered("node-unenforced")
    daemonset = one(objects, "DaemonSet")
    pod = _check_pod_basics(daemonset["spec"]["template"])
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "Default"
    resolver = container(pod, "dnssec-sidecar")
    _check_resolver_container(resolver, host_network=True)
    assert [c["name"] for c in pod["initContainers"]] == ["link-local", "state-dir"]
    env = _check_script_delivery(objects, pod, "link-local",
                                 K8S / "overlays" / "node-unenforced" / "link-local.sh")
    config = _config("node-unenforced", tmp_path)
    assert [e.host for e in config.listen] == [env["LOCAL_ADDRESS"]]
    assert env["LOCAL_ADDRESS"].startswith("169.254.")
    assert len(env["INTERFACE"]) <= 15


def test_node_daemonset_rolls_out_with_a_surge_pod_that_takes_over(tmp_path):
    """A DaemonSet rolling update that drops nothing (README "Restarts that drop nothing"):
    the new pod starts beside the old one (maxSurge, nothing unavailable), both see the same
    cache directory on the node, owned by the resolver's UID, and the old one has the time to
    hand over, finish and write its cache."""
    objects = rendered("node-unenforced")
    daemonset = one(objects, "DaemonSet")
    assert daemonset["spec"]["updateStrategy"]["rollingUpdate"] == {"maxSurge": 1,
                                                                    "maxUnavailable": 0}
    pod = daemonset["spec"]["template"]["spec"]
    resolver = container(pod, "dnssec-sidecar")
    config = _config("node-unenforced", tmp_path)
    directory = os.path.dirname(config.cache.persist)
    (mount,) = [m for m in resolver["volumeMounts"] if m["mountPath"] == directory]
    volume = {v["name"]: v for v in pod["volumes"]}[mount["name"]]
    assert volume["hostPath"] == {"path": directory, "type": "DirectoryOrCreate"}
    init = container(pod, "state-dir")
    assert f"chown {RESOLVER_UID}:{RESOLVER_UID} {directory}" in init["command"][-1]
    assert set(init["securityContext"]["capabilities"]["add"]) <= {"CHOWN", "FOWNER"}
    grace = pod["terminationGracePeriodSeconds"]
    assert grace >= (config.timeouts.drain_ms + config.timeouts.query_ms) / 1000 + 5


def test_sidecar_keeps_its_cache_across_a_restart_of_its_container(tmp_path):
    """The native sidecar restarted in place (liveness, a crash) reads the cache it wrote: an
    emptyDir of the pod, which outlives the container."""
    pod = one(rendered("sidecar"), "Deployment")["spec"]["template"]["spec"]
    config = _config("sidecar", tmp_path)
    directory = os.path.dirname(config.cache.persist)
    (mount,) = [m for m in container(pod, "dnssec-sidecar")["volumeMounts"]
                if m["mountPath"] == directory]
    assert "emptyDir" in {v["name"]: v for v in pod["volumes"]}[mount["name"]]
    assert pod["terminationGracePeriodSeconds"] >= config.timeouts.query_ms / 1000 + 5


def test_node_headless_service_lists_the_metrics_endpoints():
    objects = rendered("node-unenforced")
    service = one(objects, "Service")
    daemonset = one(objects, "DaemonSet")
    assert service["spec"]["clusterIP"] == "None"
    assert (service["spec"]["selector"].items()
            <= daemonset["spec"]["template"]["metadata"]["labels"].items())
    (port,) = service["spec"]["ports"]
    assert port["port"] == METRICS_PORT and port["targetPort"] == METRICS_PORT


@pytest.mark.parametrize("script", ["capture/dns-capture.sh",
                                    "overlays/node-unenforced/link-local.sh"])
def test_scripts_are_posix_sh(script):
    path = K8S / script
    assert path.read_text().startswith("#!/bin/sh\n")
    assert "set -eu" in path.read_text()
    for shell in ("sh", "dash", "busybox"):
        if shutil.which(shell):
            argv = [shell, "sh", "-n", str(path)] if shell == "busybox" else [shell, "-n",
                                                                              str(path)]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
            assert done.returncode == 0, (shell, done.stderr)
    if shutil.which("shellcheck"):
        done = subprocess.run(["shellcheck", "--shell=sh", str(path)], capture_output=True,
                              text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stdout


# --- the Grafana dashboard ------------------------------------------------------------------

#: The metric families the resolver exports (resolver/ops/metrics.py), without the prefix.
METRICS = {
    "queries_total": {"service", "qtype", "rcode"},
    "validation_total": {"verdict", "reason"},
    "policy_refusals_total": {"service", "rule"},
    "cache_hits_total": set(),
    "cache_misses_total": set(),
    "cache_entries": set(),
    "cache_evictions_total": set(),
    "upstream_queries_total": set(),
    "upstream_timeouts_total": set(),
    "upstream_rtt_seconds": set(),
    "query_duration_seconds": {"transport"},
    "log_queue_depth": set(),
    "log_records_total": set(),
    "log_bytes_total": set(),
    "log_write_errors_total": set(),
    "budget_exhausted_total": {"budget"},
    "dnssec_events_total": {"event"},
    "config_reloads_total": {"result"},
    "zone_state": {"zone", "state"},
    "zone_signature_expiry_timestamp_seconds": {"zone"},
    "zone_key_changes_total": {"zone", "kind"},
    "canary_resolved": {"name"},
}
HISTOGRAMS = {"upstream_rtt_seconds", "query_duration_seconds"}
GAUGES = {"cache_entries", "log_queue_depth", "zone_state",
          "zone_signature_expiry_timestamp_seconds", "canary_resolved"}
#: Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "node", "le"}


def _panels(dashboard: dict[str, Any]):
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def test_dashboard_charts_every_metric_correctly():
    dashboard = json.loads((K8S / "dashboard.json").read_text())
    assert dashboard["title"] and dashboard["uid"] and dashboard["schemaVersion"] >= 30
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in _panels(dashboard)]
    assert len(ids) == len(set(ids))
    used: set[str] = set()
    for panel in _panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel["gridPos"]["w"] > 0, panel
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            assert expr.count("(") == expr.count(")"), expr
            for name in re.findall(r"dnssec_sidecar_([a-z_]+)", expr):
                base = re.sub(r"_(bucket|sum|count)$", "", name)
                assert base in METRICS, f"{panel['title']}: unknown metric {name}"
                used.add(base)
                if base in HISTOGRAMS:
                    assert name != base, f"{expr}: a histogram is read through its series"
                    if name.endswith("_bucket"):
                        assert "histogram_quantile(" in expr and " by (le" in expr, expr
                elif base not in GAUGES:
                    assert re.search(rf"(rate|increase)\(dnssec_sidecar_{name}\b", expr), (
                        f"{expr}: a counter is charted as a rate")
            for label in re.findall(r"by \(([^)]*)\)", expr):
                names = {part.strip() for part in label.split(",")}
                metric = re.findall(r"dnssec_sidecar_([a-z_]+)", expr)[0]
                base = re.sub(r"_(bucket|sum|count)$", "", metric)
                assert names <= METRICS[base] | TARGET_LABELS, expr
    assert used == set(METRICS), f"not charted: {set(METRICS) - used}"


def test_prometheus_rule_alerts_on_expiry_state_changes_and_canaries():
    """k8s/monitoring (issue #18): a PrometheusRule (Prometheus Operator) whose alerts read
    only metrics the resolver exports, with their labels, counters through increase()."""
    kustomization = yaml.safe_load((K8S / "monitoring" / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["prometheusrule.yaml"]
    rule = yaml.safe_load((K8S / "monitoring" / "prometheusrule.yaml").read_text())
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert rule["metadata"]["name"] and not set(rule) - {"apiVersion", "kind", "metadata",
                                                         "spec"}
    alerts = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    names = [a["alert"] for a in alerts]
    assert len(names) == len(set(names))
    read: dict[str, str] = {}
    for alert in alerts:
        assert set(alert) <= {"alert", "expr", "for", "labels", "annotations"}, alert
        assert alert["labels"]["severity"] in ("info", "warning", "critical")
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]
        expr = alert["expr"]
        assert expr.count("(") == expr.count(")"), expr
        for name in re.findall(r"dnssec_sidecar_([a-z_]+)", expr):
            assert name in METRICS, f"{alert['alert']}: unknown metric {name}"
            if name not in GAUGES:
                assert re.search(rf"increase\(dnssec_sidecar_{name}\b", expr), expr
            read[name] = alert["alert"]
            for label in re.findall(r"by \(([^)]*)\)", expr):
                labels = {part.strip() for part in label.split(",")}
                assert labels <= METRICS[name] | TARGET_LABELS, expr
        for label in re.findall(r"\$labels\.([a-z_]+)", str(alert["annotations"])):
            by = re.findall(r"by \(([^)]*)\)", expr)
            assert any(label in {p.strip() for p in b.split(",")} for b in by), (alert, label)
    assert {"zone_signature_expiry_timestamp_seconds", "zone_state", "canary_resolved",
            "zone_key_changes_total", "dnssec_events_total"} <= set(read)
    changes = " ".join(a["expr"] for a in alerts if "dnssec_events_total" in a["expr"])
    assert "became_insecure" in changes and "became_bogus" in changes


# --- the image ------------------------------------------------------------------------------

def _stages(dockerfile: str) -> list[dict[str, Any]]:
    """The Dockerfile's stages: base image, name, and instructions (continuations joined)."""
    text = re.sub(r"\\\n", " ", dockerfile)
    stages: list[dict[str, Any]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            words = rest.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append({"from": words[0], "name": name, "lines": []})
        elif stages:
            stages[-1]["lines"].append((instruction, rest.strip()))
        else:
            assert instruction == "ARG", line
    return stages


_COMPILERS = re.compile(r"\b(build-essential|gcc|g\+\+|clang|cc|make|cpp|python3?-dev|"
                        r"libc6?-dev|libpython[0-9.]*-dev|cython3?)\b")


def test_dockerfile_builds_in_one_stage_and_runs_slim_and_non_root_in_another():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.startswith("# syntax=docker/dockerfile:1")
    stages = _stages(dockerfile)
    names = [s["name"] for s in stages]
    assert names[0] == "builder" and names[-1] == "runtime", names
    builder, runtime = stages[0], stages[-1]
    base = re.search(r"ARG PYTHON_IMAGE=(\S+)", dockerfile)[1]
    assert base.startswith("python:3.11-slim")
    assert builder["from"] == runtime["from"] == "${PYTHON_IMAGE}", "same Python: cp311 wheels"
    build = " ".join(rest for ins, rest in builder["lines"] if ins == "RUN")
    assert "build-essential" in build
    assert re.search(r"pip wheel\b.* \. -w /wheels", build)

    run = [rest for ins, rest in runtime["lines"] if ins == "RUN"]
    for rest in run:
        installed = re.findall(r"apt-get install ([^&;|]*)", rest)
        for packages in installed:
            assert not _COMPILERS.search(packages), f"compiler in the final stage: {packages}"
    assert any("--no-index" in rest and "/wheels" in rest for rest in run)
    assert any("from=builder" in rest for rest in run), "the wheels come from the builder"
    for ins, rest in runtime["lines"]:
        if ins == "COPY":
            assert "--from=builder" not in rest or "/wheels" in rest, rest
    assert any("useradd" in rest and "--uid 10053" in rest for rest in run)
    assert any("groupadd" in rest and "--gid 10053" in rest for rest in run)
    assert any("setcap cap_net_bind_service=+ep" in rest for rest in run)
    users = [rest for ins, rest in runtime["lines"] if ins == "USER"]
    assert users and users[-1].split(":")[0] == str(RESOLVER_UID)
    exposed = set(" ".join(rest for ins, rest in runtime["lines"] if ins == "EXPOSE").split())
    assert exposed == {"53/udp", "53/tcp", f"{METRICS_PORT}/tcp"}
    (entrypoint,) = [json.loads(rest) for ins, rest in runtime["lines"] if ins == "ENTRYPOINT"]
    (cmd,) = [json.loads(rest) for ins, rest in runtime["lines"] if ins == "CMD"]
    assert entrypoint + cmd == ENTRYPOINT
    netinit = {s["name"]: s for s in stages}["netinit"]
    tools = " ".join(rest for ins, rest in netinit["lines"] if ins == "RUN")
    assert "iptables" in tools and "iproute2" in tools


def _dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last matching pattern decides; a pattern matching a directory also
    matches everything under it."""
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        parts = path.split("/")
        if any(re.fullmatch(regex, "/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            excluded = not negate
    return excluded


def test_dockerignore_sends_only_the_sources_the_builder_needs():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    copied = set(re.findall(r"^COPY (?!--)(.*) \S+$", (ROOT / "Dockerfile").read_text(),
                            re.MULTILINE))
    needed = {word for line in copied for word in line.split()}
    for path in needed:
        assert (ROOT / path).exists(), path
        assert not _dockerignore_excludes(patterns, path), path
    assert not _dockerignore_excludes(patterns, "resolver/dnssec/verify.pyx")
    assert not _dockerignore_excludes(patterns, "resolver/dnssec/sigcrypt.py")
    for path in (".git/config", "tests/test_k8s.py", "build/lib/x.py", ".ci-venv/bin/python",
                 "resolver/dnssec/verify.c", "resolver/dnssec/verify.cpython-311-x86_64-linux-gnu.so",
                 "resolver/__pycache__/cli.cpython-311.pyc", "k8s/dashboard.json",
                 ".hypothesis/x"):
        assert _dockerignore_excludes(patterns, path), path


def test_dockerfile_config_path_is_the_one_kubernetes_mounts():
    for overlay in OVERLAYS:
        objects = rendered(overlay)
        workload = next(o for o in objects if o["kind"] in ("Deployment", "DaemonSet"))
        resolver = container(workload["spec"]["template"]["spec"], "dnssec-sidecar")
        assert shlex.join(resolver["args"]) == shlex.join(ENTRYPOINT[1:])
    assert fnmatch.fnmatch(ENTRYPOINT[-1], f"{CONFIG_DIR}/*")
    assert os.path.basename(ENTRYPOINT[-1]) == "config.yaml"
