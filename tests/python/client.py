"""The Python `kubernetes` client against kubelab's apiserver: list, create,
read, patch, watch and delete, as a program written for a real cluster
would. Run by tests/python_client.rs with KUBECONFIG set; prints one line
per step and exits non-zero on the first surprise."""

import sys
import threading

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

config.load_kube_config()
core = client.CoreV1Api()
apps = client.AppsV1Api()

names = sorted(ns.metadata.name for ns in core.list_namespace().items)
assert names == ["default", "kube-node-lease", "kube-public", "kube-system"], names
print("namespaces:", " ".join(names))

cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py", labels={"lang": "python"}), data={"k": "v"})
created = core.create_namespaced_config_map("default", cm)
print("created configmap", created.metadata.name, "rv", "set" if created.metadata.resource_version else "missing")

# A watch started now sees the next change.
seen = []
def follow():
    w = watch.Watch()
    for event in w.stream(core.list_namespaced_config_map, "default", label_selector="lang=python", timeout_seconds=5):
        seen.append((event["type"], event["object"].metadata.name, event["object"].data))
        if event["type"] == "MODIFIED":
            w.stop()
watcher = threading.Thread(target=follow)
watcher.start()
import time
time.sleep(1)
core.patch_namespaced_config_map("py", "default", {"data": {"k": "changed"}})
watcher.join(10)
assert ("MODIFIED", "py", {"k": "changed"}) in seen, seen
print("watch saw:", ", ".join(f"{t} {n}" for t, n, _ in seen))

dep = client.V1Deployment(
    metadata=client.V1ObjectMeta(name="pyweb"),
    spec=client.V1DeploymentSpec(
        replicas=2,
        selector=client.V1LabelSelector(match_labels={"app": "pyweb"}),
        template=client.V1PodTemplateSpec(
            metadata=client.V1ObjectMeta(labels={"app": "pyweb"}),
            spec=client.V1PodSpec(containers=[client.V1Container(name="web", image="nginx:1.27")]),
        ),
    ),
)
apps.create_namespaced_deployment("default", dep)
scaled = apps.patch_namespaced_deployment_scale("pyweb", "default", {"spec": {"replicas": 4}})
assert scaled.spec.replicas == 4, scaled
print("deployment scaled to", apps.read_namespaced_deployment("pyweb", "default").spec.replicas)

# A fresh DaemonSet read back through the typed model, which requires the
# status counters Go always writes.
ds = client.V1DaemonSet(
    metadata=client.V1ObjectMeta(name="pyagent"),
    spec=client.V1DaemonSetSpec(
        selector=client.V1LabelSelector(match_labels={"app": "pyagent"}),
        template=client.V1PodTemplateSpec(
            metadata=client.V1ObjectMeta(labels={"app": "pyagent"}),
            spec=client.V1PodSpec(containers=[client.V1Container(name="agent", image="busybox")]),
        ),
    ),
)
apps.create_namespaced_daemon_set("default", ds)
status = apps.read_namespaced_daemon_set("pyagent", "default").status
print("daemonset status: desired", status.desired_number_scheduled, "current", status.current_number_scheduled,
      "ready", status.number_ready, "misscheduled", status.number_misscheduled)

try:
    core.read_namespaced_config_map("nope", "default")
    sys.exit("reading a missing configmap did not fail")
except ApiException as e:
    assert e.status == 404, e
    print("missing configmap:", e.status, e.reason)

core.delete_namespaced_config_map("py", "default")
apps.delete_namespaced_deployment("pyweb", "default")
apps.delete_namespaced_daemon_set("pyagent", "default")
print("deleted; configmaps left with lang=python:", len(core.list_namespaced_config_map("default", label_selector="lang=python").items))
