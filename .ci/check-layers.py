#!/usr/bin/env python3
"""Fails when the modules under src/ import each other in a circle, or a module imports one of a
higher layer (ARCHITECTURE.md, "Layers").

Known violations still being untangled are listed in .ci/layers-baseline.txt (one line each, as
printed); the check fails on any violation not in it, and says which listed ones are gone so the
list only shrinks.

A module is a file under src/ (a folder's mod.rs stands for the folder). An edge A -> B is any
`crate::B...` path in A's code (use lines and inline paths alike, tests included; comments
excluded), `super::` resolved, and a child module's own parent excluded (a folder may use what its
mod.rs declares). Prints every cycle found (as strongly connected components) and every upward
import, then exits 1; prints a one-line summary and exits 0 when there are none.
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")

# Lower number = lower layer. A module may import its own layer or lower ones, never higher.
# The first matching prefix wins.
DOMAIN = ["gate", "rollout", "smoke", "backup", "migrate", "record", "release", "rollback", "pipeline", "notify",
          "drill", "lease", "watch"]
ADAPTERS = ["actions", "github", "git", "storage", "postgres", "process", "hooks", "health",
            "artifacts", "version", "metrics"]
LAYERS = [
    ("main", 6),
    ("cli", 5),
    ("commands", 5),
    ("properties", 5),  # tests only: properties of code from every layer
    ("settings", 4),
    *[(m, 3) for m in DOMAIN],
    *[(m, 2) for m in ADAPTERS],
    ("state", 1),       # the contract: data types every layer above shares
]
DEFAULT_LAYER = 0  # the foundation: error, exit, util, secret, text, inputs, log


def module_of(path):
    rel = os.path.relpath(path, ROOT)[:-3]  # strip .rs
    parts = rel.split(os.sep)
    if parts[-1] == "mod":
        parts = parts[:-1]
    return "::".join(parts)


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def main():
    files = {}
    for dirpath, _, names in os.walk(ROOT):
        for name in names:
            if name.endswith(".rs"):
                path = os.path.join(dirpath, name)
                files[module_of(path)] = path
    modules = set(files)

    def resolve(path_parts):
        # the longest prefix of the path that is a module file
        for n in range(len(path_parts), 0, -1):
            cand = "::".join(path_parts[:n])
            if cand in modules:
                return cand
        return None

    edges = {m: set() for m in modules}
    for mod, path in files.items():
        with open(path, encoding="utf-8") as f:
            code = strip_comments(f.read())
        # expand `use crate::{a, b::c}` groups one level
        for group in re.finditer(r"crate::\{([^}]*)\}", code):
            for item in group.group(1).split(","):
                item = item.strip().split(" as ")[0]
                if item:
                    code += f"\ncrate::{item}"
        targets = [m.group(1).split("::") for m in re.finditer(r"\bcrate::((?:[a-z_][a-z0-9_]*::)*[a-z_][a-z0-9_]*)", code)]
        here = mod.split("::") if mod != "main" else []
        for m in re.finditer(r"\b((?:super::)+)((?:[a-z_][a-z0-9_]*::)*[a-z_][a-z0-9_]*)", code):
            ups = m.group(1).count("super::")
            is_dir = path.endswith("mod.rs") or mod == "main"
            base = here if is_dir else here[:-1] if here else []
            base = base[: len(base) - (ups - 1)] if ups > 1 else base
            targets.append(base + m.group(2).split("::"))
        for parts in targets:
            target = resolve(parts)
            if target and target != mod and not mod.startswith(target + "::"):
                edges[mod].add(target)

    # Tarjan's strongly connected components
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    for v in sorted(modules):
        if v not in index:
            visit(v)

    def layer(m):
        for prefix, n in LAYERS:
            if m == prefix or m.startswith(prefix + "::"):
                return n
        return DEFAULT_LAYER

    upward = sorted(
        (a, b) for a in edges for b in edges[a] if layer(b) > layer(a)
    )
    found = []
    for comp in sccs:
        for a in comp:
            for b in sorted(b for b in edges[a] if b in comp):
                found.append(f"cycle: {a} -> {b}")
    for a, b in upward:
        found.append(f"upward: {a} (layer {layer(a)}) -> {b} (layer {layer(b)})")
    baseline_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "layers-baseline.txt")
    if "--write-baseline" in sys.argv:
        with open(baseline_path, "w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in sorted(found)))
        print(f"layers: wrote {len(found)} known violation(s) to {baseline_path}")
        return
    known = set()
    if os.path.exists(baseline_path):
        with open(baseline_path, encoding="utf-8") as f:
            known = {line.strip() for line in f if line.strip() and not line.startswith("#")}
    new = sorted(set(found) - known)
    gone = sorted(known - set(found))
    for line in new:
        print(f"NEW {line}")
    for line in gone:
        print(f"fixed (remove from .ci/layers-baseline.txt): {line}")
    imports = sum(len(e) for e in edges.values())
    if new:
        print(f"layers: {len(new)} new violation(s): an import cycle or an import of a higher layer; see ARCHITECTURE.md")
        sys.exit(1)
    print(f"layers: {len(modules)} modules, {imports} imports, {len(found)} known violation(s) left, none new")

if __name__ == "__main__":
    main()
