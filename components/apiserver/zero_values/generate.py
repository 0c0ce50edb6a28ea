#!/usr/bin/env python3
"""Generates table.json: the fields Go's encoding/json writes for every
built-in kind even when they hold their zero value, read from the Go
structs of k8s.io/api and k8s.io/apimachinery.

    generate.py --api DIR --apimachinery DIR [--label TEXT] [-o table.json]

DIR is a checkout of each repository at the version the apiserver claims
to be (v0.33.x for Kubernetes 1.33), e.g. `git clone --depth 1 --branch
v0.33.13 https://github.com/kubernetes/api`. Only this script reads the Go
source; the apiserver reads the table it writes, which is checked in (CI
never runs this). The kinds are those each package's scheme registers
(register.go) that have metadata, lists left out. Its Go reader (Package,
Universe, parse_tag) is also used by ../protobuf/generate.py.

How Go writes a field of a struct (encoding/json):
  - a number, bool or string without `omitempty` is always written: its
    zero is 0, false or "";
  - a struct that is no pointer is always written, `omitempty` or not
    (encoding/json never thinks a struct empty), so it becomes {} and its
    own fields follow these rules; `omitzero` omits it;
  - a type with its own MarshalJSON is a leaf, written as that method
    writes its zero value: null for metav1.Time and MicroTime, "0" for a
    Quantity, 0 for an IntOrString (see LEAVES);
  - pointers, slices and maps are nil when absent: the table leaves them
    absent (Go would write null where there is no `omitempty`), but
    follows them into what they hold when they are present.

The table: "kinds" maps "apiVersion kind" to a struct; "types" maps a
struct to its rules, each [json name, how, what]:
  ["x", "zero", 0]   x is set to the value when absent;
  ["x", "fill", T]   x is set to {} when absent, then T's rules apply in it;
  ["x", "in", T]     T's rules apply in x when x is an object;
  ["x", "each", T]   T's rules apply in every object of the list x;
  ["x", "values", T] T's rules apply in every object value of the map x.
Structs with no rule that changes anything are left out, and so are the
rules that lead to them.
"""

import argparse
import json
import os
import re
import sys

# The packages whose top-level kinds the table covers (folders of k8s.io/api).
PACKAGES = [
    "core/v1",
    "apps/v1",
    "batch/v1",
    "autoscaling/v1",
    "autoscaling/v2",
    "policy/v1",
    "networking/v1",
    "rbac/v1",
    "storage/v1",
    "coordination/v1",
    "discovery/v1",
    "events/v1",
    "scheduling/v1",
    "node/v1",
]

META = "k8s.io/apimachinery/pkg/apis/meta/v1"

# Types with their own MarshalJSON, and what Go writes for their zero value.
# They are structs, so a field of one that is no pointer is written under
# `omitempty` too (a downward API `divisor: "0"`). A zero RawExtension
# writes null, which clients read as absent: it is left absent, as is
# FieldsV1 (only ever behind a pointer).
LEFT_ABSENT = object()
LEAVES = {
    META + ".Time": None,
    META + ".MicroTime": None,
    META + ".Duration": "0s",
    META + ".FieldsV1": LEFT_ABSENT,
    "k8s.io/apimachinery/pkg/api/resource.Quantity": "0",
    "k8s.io/apimachinery/pkg/util/intstr.IntOrString": 0,
    "k8s.io/apimachinery/pkg/runtime.RawExtension": LEFT_ABSENT,
}

NUMBERS = {
    "int", "int8", "int16", "int32", "int64",
    "uint", "uint8", "uint16", "uint32", "uint64", "uintptr",
    "float32", "float64", "byte", "rune",
}


def skipped_file(name):
    return (not name.endswith(".go") or name.endswith("_test.go") or name.startswith("zz_generated")
            or name.endswith(".pb.go") or name.endswith("_swagger_doc_generated.go"))


class Package:
    """The type declarations of one Go package, as text."""

    def __init__(self, path, folder):
        self.path = path
        self.folder = folder
        self.group = None
        self.registered = []  # the kinds its scheme registers, in order
        self.types = {}  # name -> ("struct", [field lines]) or ("named", type expression)
        self.imports = {}  # file -> {alias: import path}
        self.marshalers = set()
        self.file_of = {}
        for name in sorted(os.listdir(folder)):
            if not skipped_file(name):
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    self.read(name, f.read())

    def read(self, file, text):
        m = re.search(r'^const GroupName = "([^"]*)"', text, re.M)
        if m:
            self.group = m.group(1)
        for call in re.finditer(r"AddKnownTypes\((.*?)\)\n", text, re.S):
            self.registered.extend(re.findall(r"&(\w+)\{\}", call.group(1)))
        self.imports[file] = parse_imports(text)
        for m in re.finditer(r"^func \(\s*\w*\s*\*?(\w+)\s*\) MarshalJSON\(", text, re.M):
            self.marshalers.add(m.group(1))
        lines = text.split("\n")
        i = 0
        while i < len(lines):
            line = strip_comment(lines[i])
            m = re.match(r"^type (\w+) struct\s*\{\s*$", line)
            if m:
                body = []
                i += 1
                depth = 1
                while i < len(lines):
                    inner = strip_comment(lines[i])
                    depth += inner.count("{") - inner.count("}")
                    if depth <= 0:
                        break
                    if depth == 1:
                        body.append(inner)
                    i += 1
                self.types[m.group(1)] = ("struct", body)
                self.file_of[m.group(1)] = file
            else:
                m = re.match(r"^type (\w+)\s+(?:=\s*)?([^{]+?)\s*$", line)
                if m and m.group(2) not in ("interface",):
                    self.types[m.group(1)] = ("named", m.group(2))
                    self.file_of[m.group(1)] = file
            i += 1


def strip_comment(line):
    # Tags hold no "//"; a comment starts outside of them.
    tick = line.find("`")
    cut = line.find("//")
    if cut >= 0 and (tick < 0 or cut < tick):
        return line[:cut].rstrip()
    if cut >= 0 and tick >= 0:
        close = line.find("`", tick + 1)
        after = line.find("//", close + 1) if close >= 0 else -1
        if after >= 0:
            return line[:after].rstrip()
    return line.rstrip()


def parse_imports(text):
    found = {}
    block = re.search(r"^import \((.*?)^\)", text, re.M | re.S)
    specs = block.group(1).split("\n") if block else re.findall(r"^import (.*)$", text, re.M)
    for spec in specs:
        m = re.match(r'^\s*(?:(\w+)\s+)?"([^"]+)"', spec)
        if m:
            alias = m.group(1) or m.group(2).rsplit("/", 1)[-1]
            found[alias] = m.group(2)
    return found


def parse_tag(tag):
    """json name (None: Go's field name), options, and whether it is "-"."""
    m = re.search(r'json:"([^"]*)"', tag or "")
    if not m:
        return None, set(), False
    parts = m.group(1).split(",")
    if parts[0] == "-" and len(parts) == 1:
        return None, set(), True
    return (parts[0] or None), set(parts[1:]), False


def split_map(expr):
    """map[K]V -> (K, V), K possibly holding brackets itself."""
    depth, i = 0, 3
    while i < len(expr):
        depth += {"[": 1, "]": -1}.get(expr[i], 0)
        if depth == 0:
            break
        i += 1
    return expr[4:i], expr[i + 1:]


FIELD = re.compile(r"^\s*([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s+([^`]+?)\s*(`[^`]*`)?\s*$")
EMBEDDED = re.compile(r"^\s*(\*?[A-Za-z_][\w.]*)\s*(`[^`]*`)?\s*$")


class Universe:
    def __init__(self, api, apimachinery):
        self.roots = {"k8s.io/api/": api, "k8s.io/apimachinery/": apimachinery}
        self.packages = {}

    def package(self, path):
        if path not in self.packages:
            for prefix, root in self.roots.items():
                if path.startswith(prefix):
                    folder = os.path.join(root, path[len(prefix):])
                    self.packages[path] = Package(path, folder) if os.path.isdir(folder) else None
                    break
            else:
                self.packages[path] = None
        return self.packages[path]

    def resolve(self, pkg, file, expr):
        """A type expression seen in `file` of `pkg` -> a description:
        ("zero", value[, "struct"]) | ("leaf",) | ("struct", id) | ("ptr", d) |
        ("slice", d) | ("map", d)."""
        expr = expr.strip()
        if expr.startswith("*"):
            return ("ptr", self.resolve(pkg, file, expr[1:]))
        if expr.startswith("[]"):
            return ("slice", self.resolve(pkg, file, expr[2:]))
        m = re.match(r"^\[\w*\](.*)$", expr)
        if m:
            return ("slice", self.resolve(pkg, file, m.group(1)))
        if expr.startswith("map["):
            return ("map", self.resolve(pkg, file, split_map(expr)[1]))
        if expr in NUMBERS:
            return ("zero", 0)
        if expr == "bool":
            return ("zero", False)
        if expr == "string":
            return ("zero", "")
        if "." in expr:
            alias, name = expr.split(".", 1)
            path = pkg.imports[file].get(alias)
            if path is None:
                return ("leaf",)
            return self.named(path, name)
        return self.named(pkg.path, expr)

    def named(self, path, name):
        full = f"{path}.{name}"
        if full in LEAVES:
            zero = LEAVES[full]
            return ("leaf",) if zero is LEFT_ABSENT else ("zero", zero, "struct")
        pkg = self.package(path)
        if pkg is None or name not in pkg.types:
            return ("leaf",)
        if name in pkg.marshalers:
            raise SystemExit(f"{full} has its own MarshalJSON: say in LEAVES what Go writes for it")
        what, decl = pkg.types[name]
        if what == "struct":
            return ("struct", full)
        return self.resolve(pkg, pkg.file_of[name], decl)

    def fields(self, struct_id):
        """The JSON fields of a struct: [(json name, options, description)],
        inlined structs' fields in their place."""
        path, name = struct_id.rsplit(".", 1)
        pkg = self.package(path)
        file = pkg.file_of[name]
        out = []
        for line in pkg.types[name][1]:
            if not line.strip():
                continue
            m = EMBEDDED.match(line)
            if m:
                expr, tag = m.group(1), m.group(2)
                json_name, options, skip = parse_tag(tag)
                if skip:
                    continue
                desc = self.resolve(pkg, file, expr)
                if json_name is None:
                    target = desc[1] if desc[0] == "ptr" else desc
                    if target[0] == "struct":
                        out.extend(self.fields(target[1]))
                    continue
                out.append((json_name, options, desc))
                continue
            m = FIELD.match(line)
            if not m:
                continue
            names = [n.strip() for n in m.group(1).split(",")]
            json_name, options, skip = parse_tag(m.group(3))
            if skip:
                continue
            desc = self.resolve(pkg, file, m.group(2))
            for n in names:
                if n[0].isupper():
                    out.append((json_name or n, options, desc))
        return out


def short(struct_id):
    """A struct's name in the table: k8s.io/api/apps/v1.X -> apps/v1.X,
    k8s.io/apimachinery/pkg/apis/meta/v1.X -> meta/v1.X."""
    for prefix in ("k8s.io/api/", "k8s.io/apimachinery/pkg/apis/", "k8s.io/apimachinery/pkg/"):
        if struct_id.startswith(prefix):
            return struct_id[len(prefix):]
    return struct_id


def container(desc):
    """The struct a pointer, slice or map leads to, and how to reach it."""
    how = {"ptr": "in", "slice": "each", "map": "values"}.get(desc[0])
    if how is None:
        return None
    inner = desc[1]
    while inner[0] == "ptr":
        inner = inner[1]
    if inner[0] == "struct":
        return how, inner[1]
    return None


def build(universe, packages):
    kinds = {}
    for folder in packages:
        path = "k8s.io/api/" + folder
        pkg = universe.package(path)
        if pkg is None:
            raise SystemExit(f"no package {folder} under the API source")
        version = folder.rsplit("/", 1)[-1]
        api_version = f"{pkg.group}/{version}" if pkg.group else version
        if pkg.group is None or not pkg.registered:
            raise SystemExit(f"{folder}: no GroupName or registered kinds found")
        for name in pkg.registered:
            # Objects (with metadata), not lists.
            fields = universe.fields(f"{path}.{name}")
            if any(n == "metadata" and d == ("struct", META + ".ObjectMeta") for n, _, d in fields):
                kinds[f"{api_version} {name}"] = f"{path}.{name}"

    rules = {}
    pending = list(kinds.values())
    while pending:
        sid = pending.pop()
        if sid in rules:
            continue
        mine = []
        for json_name, options, desc in universe.fields(sid):
            if desc[0] == "zero":
                # A struct with its own MarshalJSON is written under omitempty too.
                leaf_struct = len(desc) > 2
                omitted = "omitzero" in options or ("omitempty" in options and not leaf_struct)
                if not omitted:
                    mine.append([json_name, "zero", desc[1]])
            elif desc[0] == "struct":
                how = "in" if "omitzero" in options else "fill"
                mine.append([json_name, how, desc[1]])
                pending.append(desc[1])
            else:
                c = container(desc)
                if c:
                    mine.append([json_name, c[0], c[1]])
                    pending.append(c[1])
        rules[sid] = mine

    # Keep only structs where something gets filled, at any depth.
    useful = set()
    changed = True
    while changed:
        changed = False
        for sid, mine in rules.items():
            if sid in useful:
                continue
            if any(how in ("zero", "fill") or what in useful for _, how, what in mine):
                useful.add(sid)
                changed = True
    types = {}
    for sid in sorted(useful):
        kept = [[n, how, what if how == "zero" else short(what)] for n, how, what in rules[sid]
                if how in ("zero", "fill") or what in useful]
        types[short(sid)] = kept
    return {k: short(v) for k, v in sorted(kinds.items()) if v in useful}, types


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--api", required=True, help="checkout of k8s.io/api")
    ap.add_argument("--apimachinery", required=True, help="checkout of k8s.io/apimachinery")
    ap.add_argument("--label", default="", help="which versions they are, recorded in the table")
    ap.add_argument("-o", "--output", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "table.json"))
    args = ap.parse_args()
    universe = Universe(args.api, args.apimachinery)
    kinds, types = build(universe, PACKAGES)
    table = {
        "about": "Generated by generate.py from the Go types; do not edit. " + args.label,
        "kinds": kinds,
        "types": types,
    }
    with open(args.output, "w", encoding="utf-8") as f:
        # One struct per line: a regenerated table's diff shows what changed.
        f.write("{\n")
        f.write(f'"about": {json.dumps(table["about"])},\n')
        f.write('"kinds": {\n')
        f.write(",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in kinds.items()))
        f.write("\n},\n")
        f.write('"types": {\n')
        f.write(",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in types.items()))
        f.write("\n}\n}\n")
    print(f"{len(kinds)} kinds, {len(types)} structs -> {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
