"""Reads back objects of every kind the apiserver serves through the Python
client's typed models, which refuse an object that lacks a required field
(a DaemonSet's status counters, a container status's restartCount, ...).
Run by tests/in_process/zero_values.rs once it has created one object of
every kind; prints what it read and exits non-zero on the first failure."""

import json

from kubernetes import client, config

config.load_kube_config()
api = client.ApiClient()
core = client.CoreV1Api()
apps = client.AppsV1Api()

# The typed reads a program written for a real cluster makes.
ds = apps.read_namespaced_daemon_set("zero", "default")
print("daemonset", ds.metadata.name, "desired", ds.status.desired_number_scheduled, "ready", ds.status.number_ready,
      "misscheduled", ds.status.number_misscheduled, "current", ds.status.current_number_scheduled)
rs = apps.read_namespaced_replica_set("zero", "default")
print("replicaset", rs.metadata.name, "replicas", rs.status.replicas)
dep = apps.read_namespaced_deployment("zero", "default")
print("deployment", dep.metadata.name, "resources", dep.spec.template.spec.containers[0].resources.to_dict())
node = core.read_node("zero")
print("node", node.metadata.name, "kubelet port", node.status.daemon_endpoints.kubelet_endpoint.port)
ev = core.read_namespaced_event("zero", "default")
print("event", ev.metadata.name, "about", ev.involved_object.kind, ev.involved_object.name)


def get(path):
    """A GET of `path` as JSON, with the client's own connection and identity."""
    method, url, headers, body, post = api.param_serialize("GET", path, header_params={"Accept": "application/json"}, auth_settings=["BearerToken"])
    response = api.call_api(method, url, headers, body, post)
    response.read()
    return json.loads(response.data)


def model(group, version, kind):
    """The model class's name for a kind: V1Pod, V2HorizontalPodAutoscaler,
    CoreV1Event and EventsV1Event where names clash."""
    v = version[0].upper() + version[1:]
    prefix = (group.split(".")[0] if group else "core").capitalize()
    for name in (prefix + v + kind, v + kind):
        if hasattr(client.models, name):
            return name
    raise SystemExit(f"no model for {group}/{version} {kind}")


def served():
    yield "", "v1", "/api/v1"
    for g in client.ApisApi().get_api_versions().groups:
        for gv in g.versions:
            yield g.name, gv.version, f"/apis/{g.name}/{gv.version}"


for group, version, base in served():
    for r in get(base)["resources"]:
        if "/" in r["name"] or "list" not in r["verbs"]:
            continue
        name = model(group, version, r["kind"])
        items = get(f"{base}/{r['name']}")["items"]
        assert items, f"no {r['name']} to read"
        for item in items:
            api.deserialize(json.dumps(item), name, "application/json")
        print(f"{group or 'core'}/{version} {r['name']}: {len(items)} read as {name}")
