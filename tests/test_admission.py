"""The admission policy of k8s/admission (issue #21), evaluated here with cel-python against
pods that must be admitted (the sidecar overlay's own pod, and correct variations) and pods
that must be rejected (each a way around the DNS capture).

The evaluation follows the API server's: the policy's ``variables`` in order, visible to later
expressions as ``variables.NAME``; a validation denies when its expression is false or fails
to evaluate (``failurePolicy: Fail``). The objects are validated against the Kubernetes schemas
by tests/test_k8s.py; kubectl itself is not run against a cluster here.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from test_k8s import container, one, rendered

celpy = pytest.importorskip("celpy", reason="cel-python evaluates the policy's CEL")

RESOLVER_UID = 10053
WORKLOAD_UID = 65534


def _policy() -> dict[str, Any]:
    return one(rendered("admission"), "ValidatingAdmissionPolicy")


def _cel(value: Any) -> Any:
    return celpy.json_to_cel(value)


def denials(pod: dict[str, Any]) -> list[str]:
    """The messages of the policy's validations that ``pod`` fails; empty if it is admitted."""
    spec = _policy()["spec"]
    env = celpy.Environment()
    variables: dict[Any, Any] = {}

    def evaluate(expression: str) -> Any:
        program = env.program(env.compile(expression))
        activation = {"object": _cel(pod),
                      "variables": celpy.celtypes.MapType(variables)}
        try:
            return program.evaluate(activation)
        except celpy.CELEvalError as exc:
            return exc

    for variable in spec["variables"]:
        variables[celpy.celtypes.StringType(variable["name"])] = evaluate(variable["expression"])
    failed = []
    for validation in spec["validations"]:
        result = evaluate(validation["expression"])
        if not (isinstance(result, celpy.celtypes.BoolType) and bool(result)):
            failed.append(" ".join(validation["message"].split()))
    return failed


def demo_pod() -> dict[str, Any]:
    """The pod the sidecar overlay's Deployment makes, as the API server sees it."""
    template = one(rendered("sidecar"), "Deployment")["spec"]["template"]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {**template["metadata"], "name": "demo-workload-abc12",
                         "namespace": "dnssec-sidecar-demo"},
            "spec": copy.deepcopy(template["spec"])}


def workload(pod: dict[str, Any]) -> dict[str, Any]:
    return container(pod["spec"], "workload")


def capture(pod: dict[str, Any]) -> dict[str, Any]:
    return container(pod["spec"], "dns-capture")


def resolver(pod: dict[str, Any]) -> dict[str, Any]:
    return container(pod["spec"], "dnssec-sidecar")


def debug_container(**security: Any) -> dict[str, Any]:
    """An ephemeral container as `kubectl debug --target=workload` adds it."""
    return {"name": "debugger-x7k2p", "image": "busybox:1.36", "targetContainerName": "workload",
            "stdin": True, "tty": True, **({"securityContext": security} if security else {})}


RESTRICTED = {"runAsUser": WORKLOAD_UID, "runAsNonRoot": True,
              "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


# --- admitted ------------------------------------------------------------------------------

def _net_bind_service(pod):
    workload(pod)["securityContext"]["capabilities"]["add"] = ["NET_BIND_SERVICE"]


def _uid_from_the_pod(pod):
    del workload(pod)["securityContext"]["runAsUser"]
    pod["spec"]["securityContext"]["runAsUser"] = WORKLOAD_UID


def _restricted_debug_container(pod):
    pod["spec"]["ephemeralContainers"] = [debug_container(**RESTRICTED)]


def _defaulted(pod):
    """What the API server's defaulting adds before admission."""
    for c in pod["spec"]["initContainers"] + pod["spec"]["containers"]:
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
    pod["spec"].update(restartPolicy="Always", schedulerName="default-scheduler")


@pytest.mark.parametrize("change", [None, _net_bind_service, _uid_from_the_pod,
                                    _restricted_debug_container, _defaulted],
                         ids=lambda change: change.__name__.strip("_") if change else "as shipped")
def test_pod_is_admitted(change):
    pod = demo_pod()
    if change:
        change(pod)
    assert denials(pod) == []


# --- rejected: each a way around the capture -------------------------------------------------

def _set(getter, path: str, value: Any):
    def change(pod):
        target = getter(pod)
        *parents, last = path.split(".")
        for key in parents:
            target = target.setdefault(key, {})
        if value is None:
            target.pop(last, None)
        else:
            target[last] = value
    change.__name__ = f"{getter.__name__}.{path}={value}"
    return change


def _pod(path: str, value: Any):
    def spec(pod):
        return pod["spec"]
    return _set(spec, path, value)


def _add_ephemeral(**security):
    def change(pod):
        pod["spec"]["ephemeralContainers"] = [debug_container(**security)]
    change.__name__ = f"ephemeral {security}"
    return change


def _capture_moved(pod):
    inits = pod["spec"]["initContainers"]
    inits.reverse()


def _capture_removed(pod):
    pod["spec"]["initContainers"] = [resolver(pod)]


def _resolver_removed(pod):
    pod["spec"]["initContainers"] = [capture(pod)]


def _script_replaced(pod):
    pod["spec"]["volumes"].append({"name": "mine", "configMap": {"name": "mine",
                                                                 "defaultMode": 0o755}})
    capture(pod)["volumeMounts"].append({"name": "mine", "mountPath": "/bin/sh",
                                         "subPath": "sh"})


def _workload_as_the_resolver_image(pod):
    workload(pod)["image"] = resolver(pod)["image"]
    workload(pod)["securityContext"]["runAsUser"] = RESOLVER_UID


def _hostpath(pod):
    pod["spec"]["volumes"].append({"name": "host", "hostPath": {"path": "/"}})


UID_RULE = "only the resolver (dnssec-sidecar) may run as the resolver's UID"
ROOT_RULE = "must run as an explicit non-root UID"
CAPS_RULE = "must drop ALL capabilities"
ESCALATION_RULE = "allowPrivilegeEscalation: false and not be privileged"
SECCOMP_RULE = "seccomp profile"
HOST_RULE = "may not share the node's network"
VOLUME_RULE = "only the volume types"
CAPTURE_FIRST = "must be the pod's first init container"
CAPTURE_RULE = "the dns-capture init container must run the repository's script"
CAPTURE_CAPS = "may have NET_ADMIN and NET_RAW and nothing more"
RESOLVER_RULE = "the pod must run the resolver"

REJECTED = [
    (_set(workload, "securityContext.runAsUser", RESOLVER_UID), UID_RULE),
    (_workload_as_the_resolver_image, UID_RULE),
    (_set(workload, "securityContext.runAsUser", 0), ROOT_RULE),
    (_set(workload, "securityContext.runAsUser", None), ROOT_RULE),  # the image's USER
    (_set(workload, "securityContext.capabilities", None), CAPS_RULE),
    (_set(workload, "securityContext.capabilities.add", ["NET_RAW"]), CAPS_RULE),
    (_set(workload, "securityContext.capabilities.add", ["NET_ADMIN"]), CAPS_RULE),
    (_set(workload, "securityContext.allowPrivilegeEscalation", True), ESCALATION_RULE),
    (_set(workload, "securityContext.allowPrivilegeEscalation", None), ESCALATION_RULE),
    (_set(workload, "securityContext.privileged", True), ESCALATION_RULE),
    (_set(workload, "securityContext.seccompProfile", {"type": "Unconfined"}), SECCOMP_RULE),
    (_set(resolver, "securityContext.capabilities.add", ["NET_BIND_SERVICE", "NET_ADMIN"]),
     CAPS_RULE),
    (_pod("hostNetwork", True), HOST_RULE),
    (_pod("hostPID", True), HOST_RULE),
    (_hostpath, VOLUME_RULE),
    # kubectl debug: the default ("legacy") profile, --profile=netadmin, and one as the resolver.
    (_add_ephemeral(), ROOT_RULE),
    (_add_ephemeral(capabilities={"add": ["NET_ADMIN", "NET_RAW"]}), CAPS_RULE),
    (_add_ephemeral(**{**RESTRICTED, "runAsUser": RESOLVER_UID}), UID_RULE),
    (_add_ephemeral(**{**RESTRICTED, "runAsUser": 0}), ROOT_RULE),
    (_capture_removed, CAPTURE_FIRST),
    (_pod("initContainers", None), CAPTURE_FIRST),
    (_capture_moved, CAPTURE_FIRST),
    (_set(capture, "env", [{"name": "RESOLVER_UID", "value": str(WORKLOAD_UID)}]), CAPTURE_RULE),
    (_set(capture, "env", [{"name": "CAPTURE_IPV6", "value": "off"}]), CAPTURE_RULE),
    (_set(capture, "env", [{"name": "DNS_PORT", "value": "54"}]), CAPTURE_RULE),
    (_set(capture, "envFrom", [{"configMapRef": {"name": "mine"}}]), CAPTURE_RULE),
    (_set(capture, "command", ["/bin/sh", "-c", "true"]), CAPTURE_RULE),
    (_set(capture, "image", "busybox:1.36"), CAPTURE_RULE),
    (_set(capture, "restartPolicy", "Always"), CAPTURE_RULE),
    (_script_replaced, CAPTURE_RULE),
    (_set(capture, "securityContext.capabilities.add", ["NET_ADMIN", "SYS_ADMIN"]),
     CAPTURE_CAPS),
    (_set(capture, "securityContext.privileged", True), CAPTURE_CAPS),
    (_resolver_removed, RESOLVER_RULE),
    (_set(resolver, "command", ["python3", "-c", "..."]), RESOLVER_RULE),
    (_set(resolver, "image", "busybox:1.36"), RESOLVER_RULE),
]


@pytest.mark.parametrize("change,rule", REJECTED, ids=[c.__name__ for c, _ in REJECTED])
def test_pod_is_rejected(change, rule):
    pod = demo_pod()
    change(pod)
    failed = denials(pod)
    assert any(rule in message for message in failed), failed


# --- the objects --------------------------------------------------------------------------------

def test_policy_is_bound_to_the_sidecar_namespace_and_sees_every_container():
    objects = rendered("admission")
    policy = _policy()
    binding = one(objects, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert policy["spec"]["failurePolicy"] == "Fail"
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert set(rule["resources"]) == {"pods", "pods/ephemeralcontainers"}
    assert set(rule["operations"]) == {"CREATE", "UPDATE"}
    namespace = one(rendered("sidecar"), "Namespace")
    selector = binding["spec"]["matchResources"]["namespaceSelector"]["matchLabels"]
    assert selector.items() <= namespace["metadata"]["labels"].items()
    assert "metadata" not in policy or "namespace" not in policy["metadata"], "cluster-scoped"
