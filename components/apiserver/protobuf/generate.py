#!/usr/bin/env python3
"""Generates table.rs: the schema table the apiserver's protobuf decoder
(src/protobuf.rs) walks, read from the Go structs of k8s.io/api and
k8s.io/apimachinery.

    generate.py --api DIR --apimachinery DIR [--label TEXT] [-o table.rs]

DIR is a checkout of each repository at the version the apiserver claims
to be (v0.33.x for Kubernetes 1.33), as for ../zero_values/generate.py,
whose Go reader this script shares. Only this script reads the Go source;
the apiserver includes the table it writes, which is checked in (CI never
runs this).

Every field of a Go API struct carries both encodings in its tag:
`protobuf:"bytes,3,opt,name=spec"` gives the field number, and
`json:"spec,omitempty"` the JSON name, omitempty, or `,inline` for a
struct embedded into its parent's JSON object. A table row is
`f(number, json name, Ty, Rule)`; what Ty and Rule mean is documented in
src/protobuf.rs. From the Go type:
  - string, bool, int32, int64 (and named types of them) -> Str, Bool,
    Int32, Int64; []byte -> Bytes;
  - metav1.Time, metav1.MicroTime, intstr.IntOrString, resource.Quantity
    -> Time, MicroTime, IntOrString, Quantity; runtime.RawExtension and
    metav1.FieldsV1 -> RawJson;
  - any other struct -> Msg(its message), emitted once;
  - a slice -> Repeated, a map -> Map (of its value's Ty), an embedded
    struct without a JSON name -> Inline, a pointer -> Keep, a scalar
    tagged omitempty -> OmitZero, anything else -> Keep.
A field without a protobuf tag (TypeMeta) is not on the wire and left out.
A Go type this mapping does not cover stops the script with its name.
"""

import argparse
import importlib.util
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# The Go reader (packages, imports, struct bodies, tags) of the zero-values
# generator.
_spec = importlib.util.spec_from_file_location("zero_values_generate", os.path.join(HERE, "..", "zero_values", "generate.py"))
zv = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(zv)

META = "k8s.io/apimachinery/pkg/apis/meta/v1"

# The kinds a client may send: every stored kind the apiserver serves
# (src/resources.rs; a unit test there checks each has a root), and what
# clients send to subresources and deletes. (package folder, kind); "*" for
# the apiVersion of DeleteOptions, which every group accepts.
ROOTS = [
    ("core/v1", "Namespace"),
    ("core/v1", "Pod"),
    ("core/v1", "Node"),
    ("core/v1", "Service"),
    ("core/v1", "Endpoints"),
    ("core/v1", "ConfigMap"),
    ("core/v1", "Secret"),
    ("core/v1", "Event"),
    ("core/v1", "ServiceAccount"),
    ("core/v1", "ReplicationController"),
    ("core/v1", "PodTemplate"),
    ("core/v1", "PersistentVolume"),
    ("core/v1", "PersistentVolumeClaim"),
    ("core/v1", "ResourceQuota"),
    ("core/v1", "LimitRange"),
    ("core/v1", "Binding"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "ReplicaSet"),
    ("apps/v1", "DaemonSet"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "ControllerRevision"),
    ("autoscaling/v1", "Scale"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("batch/v1", "Job"),
    ("batch/v1", "CronJob"),
    ("networking/v1", "Ingress"),
    ("networking/v1", "IngressClass"),
    ("networking/v1", "NetworkPolicy"),
    ("policy/v1", "PodDisruptionBudget"),
    ("policy/v1", "Eviction"),
    ("rbac/v1", "Role"),
    ("rbac/v1", "RoleBinding"),
    ("rbac/v1", "ClusterRole"),
    ("rbac/v1", "ClusterRoleBinding"),
    ("storage/v1", "StorageClass"),
    ("coordination/v1", "Lease"),
    ("discovery/v1", "EndpointSlice"),
    ("meta/v1", "DeleteOptions"),
]

# Types with their own wire form, decoded by a Ty of their own.
SPECIAL = {
    META + ".Time": "Time",
    META + ".MicroTime": "MicroTime",
    META + ".FieldsV1": "RawJson",
    "k8s.io/apimachinery/pkg/runtime.RawExtension": "RawJson",
    "k8s.io/apimachinery/pkg/util/intstr.IntOrString": "IntOrString",
    "k8s.io/apimachinery/pkg/api/resource.Quantity": "Quantity",
}

SCALARS = {"string": "Str", "bool": "Bool", "int32": "Int32", "int64": "Int64"}

TAG = re.compile(r'protobuf:"([^"]*)"')


class Generator:
    def __init__(self, api, apimachinery):
        self.universe = zv.Universe(api, apimachinery)
        self.messages = {}  # struct id -> [rows]; insertion order is emission order
        self.visiting = set()

    def package_of(self, folder):
        if folder == "meta/v1":
            return self.universe.package(META)
        return self.universe.package("k8s.io/api/" + folder)

    def ty(self, pkg, file, expr, where):
        """A Go type expression -> ("scalar"|"special"|"msg", Ty text, struct id)
        or ("ptr"|"slice"|"map"|"bytes", inner)."""
        expr = expr.strip()
        if expr.startswith("*"):
            return ("ptr", self.ty(pkg, file, expr[1:], where))
        if expr == "[]byte":
            return ("bytes",)
        if expr.startswith("[]"):
            return ("slice", self.ty(pkg, file, expr[2:], where))
        if expr.startswith("map["):
            key, value = zv.split_map(expr)
            if self.ty(pkg, file, key, where) != ("scalar", "Str"):
                raise SystemExit(f"{where}: map key {key} is no string")
            return ("map", self.ty(pkg, file, value, where))
        if expr in SCALARS:
            return ("scalar", SCALARS[expr])
        if "." in expr:
            alias, name = expr.split(".", 1)
            path = pkg.imports[file].get(alias)
            if path is None:
                raise SystemExit(f"{where}: no import for {expr}")
        else:
            path, name = pkg.path, expr
        full = f"{path}.{name}"
        if full in SPECIAL:
            return ("special", SPECIAL[full])
        other = self.universe.package(path)
        if other is None or name not in other.types:
            if full == "k8s.io/apimachinery/pkg/types.UID":
                return ("scalar", "Str")
            raise SystemExit(f"{where}: cannot find the Go type {full}")
        what, decl = other.types[name]
        if what == "struct":
            return ("msg", full)
        return self.ty(other, other.file_of[name], decl, where)

    def value_ty(self, desc, where):
        """The Ty text of a single value (a field, a list element, a map value)."""
        if desc[0] == "ptr":
            desc = desc[1]
        if desc[0] in ("scalar", "special"):
            return desc[1]
        if desc[0] == "bytes":
            return "Bytes"
        if desc[0] == "msg":
            self.message(desc[1])
            return f"Msg(&{static_name(desc[1])})"
        raise SystemExit(f"{where}: {desc} nests lists or maps, which the decoder has no Ty for")

    def message(self, sid):
        if sid in self.messages or sid in self.visiting:
            return
        self.visiting.add(sid)
        path, name = sid.rsplit(".", 1)
        pkg = self.universe.package(path)
        file = pkg.file_of[name]
        rows = []
        in_comment = False
        for line in pkg.types[name][1]:
            # Block comments (/* ... */ on lines of their own) hold no fields.
            if in_comment or line.strip().startswith("/*"):
                in_comment = "*/" not in line
                continue
            if not line.strip():
                continue
            tag_text = None
            m = zv.EMBEDDED.match(line)
            if m:
                embedded, expr, tag_text = True, m.group(1), m.group(2)
                field_name = expr.lstrip("*").rsplit(".", 1)[-1]
            else:
                m = zv.FIELD.match(line)
                if not m:
                    raise SystemExit(f"{sid}: cannot read the field line {line!r}")
                embedded, field_name, expr, tag_text = False, m.group(1), m.group(2), m.group(3)
                if "," in field_name:
                    raise SystemExit(f"{sid}: {field_name} declares several fields in one line")
            proto = TAG.search(tag_text or "")
            if not proto:
                continue  # not on the wire (TypeMeta, Go-only fields)
            parts = proto.group(1).split(",")
            number = int(parts[1])
            json_name, options, skip = zv.parse_tag(tag_text)
            if skip:
                raise SystemExit(f"{sid}.{field_name} is on the wire but not in JSON")
            where = f"{sid}.{field_name}"
            desc = self.ty(pkg, file, expr, where)
            if embedded and json_name is None:
                if desc[0] != "msg":
                    raise SystemExit(f"{where}: inlines a {desc}")
                rows.append((number, "", self.value_ty(desc, where), "Inline"))
                continue
            json_name = json_name or field_name
            if desc[0] == "slice":
                rule, ty = "Repeated", self.value_ty(desc[1], where)
            elif desc[0] == "map":
                rule, ty = "Map", self.value_ty(desc[1], where)
            elif desc[0] == "ptr":
                rule, ty = "Keep", self.value_ty(desc, where)
            elif desc[0] in ("scalar", "bytes") and ("omitempty" in options or "omitzero" in options):
                rule, ty = "OmitZero", self.value_ty(desc, where)
            else:
                rule, ty = "Keep", self.value_ty(desc, where)
            rows.append((number, json_name, ty, rule))
        self.visiting.discard(sid)
        self.messages[sid] = rows


def proto_package(sid):
    """k8s.io/api/core/v1.Pod -> core.v1; meta's and others' alike."""
    path = sid.rsplit(".", 1)[0]
    for prefix in ("k8s.io/api/", "k8s.io/apimachinery/pkg/apis/", "k8s.io/apimachinery/pkg/"):
        if path.startswith(prefix):
            return path[len(prefix):].replace("/", ".")
    raise SystemExit(f"{sid}: outside k8s.io/api and apimachinery")


def message_name(sid):
    return f"{proto_package(sid)}.{sid.rsplit('.', 1)[1]}"


def static_name(sid):
    """k8s.io/api/core/v1.GCEPersistentDiskVolumeSource -> CORE_V1_GCE_PERSISTENT_DISK_VOLUME_SOURCE."""
    name = sid.rsplit(".", 1)[1]
    words = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", words)
    return (proto_package(sid).replace(".", "_") + "_" + words).upper()


def render(gen, roots, label):
    out = [
        "// Generated by components/apiserver/protobuf/generate.py from the Go",
        f"// types' struct tags ({label}); do not edit.",
        "",
        "use super::{f, Message, Rule::*, Ty::*};",
        "",
        "pub(super) static ROOTS: &[(&str, &str, &Message)] = &[",
    ]
    for api_version, kind, sid in roots:
        out.append(f"    ({rust_str(api_version)}, {rust_str(kind)}, &{static_name(sid)}),")
    out.append("];")
    for sid, rows in gen.messages.items():
        out.append("")
        out.append(f"pub(super) static {static_name(sid)}: Message = Message {{")
        out.append(f"    name: {rust_str(message_name(sid))},")
        if rows:
            out.append("    fields: &[")
            for number, json_name, ty, rule in rows:
                out.append(f"        f({number}, {rust_str(json_name)}, {ty}, {rule}),")
            out.append("    ],")
        else:
            out.append("    fields: &[],")
        out.append("};")
    return "\n".join(out) + "\n"


def rust_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--api", required=True, help="checkout of k8s.io/api")
    ap.add_argument("--apimachinery", required=True, help="checkout of k8s.io/apimachinery")
    ap.add_argument("--label", default="", help="which versions they are, recorded in the table")
    ap.add_argument("-o", "--output", default=os.path.join(HERE, "table.rs"))
    args = ap.parse_args()
    gen = Generator(args.api, args.apimachinery)
    roots = []
    for folder, kind in ROOTS:
        pkg = gen.package_of(folder)
        if pkg is None or kind not in pkg.types:
            raise SystemExit(f"no kind {kind} in {folder}")
        sid = f"{pkg.path}.{kind}"
        version = folder.rsplit("/", 1)[-1]
        api_version = "*" if folder == "meta/v1" else (f"{pkg.group}/{version}" if pkg.group else version)
        gen.message(sid)
        roots.append((api_version, kind, sid))
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(render(gen, roots, args.label))
    print(f"{len(roots)} roots, {len(gen.messages)} messages -> {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
