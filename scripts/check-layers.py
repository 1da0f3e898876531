#!/usr/bin/env python3
"""Prints the dependency graph of the crate's top-level modules and fails
when it has a cycle. A module depends on another when its source names
`crate::other` (in a `use` or a path). Also fails when library code (not
`cli/`, `main.rs` or test code) returns a bare `String` as its error: errors
are each layer's own type (doc/ARCHITECTURE.md). Run by scripts/test.sh, so
a new cycle or string error fails CI.
Usage: scripts/check-layers.py [--dot] [SRC_DIR]"""
import os
import re
import sys

args = [a for a in sys.argv[1:] if not a.startswith("--")]
src = args[0] if args else os.path.join(os.path.dirname(__file__), "..", "src")
ROOTS = {"lib.rs", "main.rs"}
ref = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
comment = re.compile(r"//.*$", re.M)

graph = {}
for entry in sorted(os.listdir(src)):
    path = os.path.join(src, entry)
    if entry in ROOTS:
        continue
    if os.path.isdir(path):
        name, files = entry, [
            os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs if f.endswith(".rs")
        ]
    elif entry.endswith(".rs"):
        name, files = entry[:-3], [path]
    else:
        continue
    deps = graph.setdefault(name, set())
    for f in files:
        with open(f, encoding="utf-8") as fh:
            text = comment.sub("", fh.read())
        deps.update(m for m in ref.findall(text) if m != name)

# Library code returns its layer's error type, never `Result<_, String>`.
string_error = re.compile(r"Result<[^;{}]*?,\s*String>")
edge = {"cli", "main.rs"}
string_errors = []
for d, _, fs in os.walk(src):
    for f in sorted(fs):
        path = os.path.join(d, f)
        rel = os.path.relpath(path, src)
        if not f.endswith(".rs") or rel.split(os.sep)[0] in edge or f == "tests.rs":
            continue
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        # Test modules sit at the end of a file, after `#[cfg(test)]`.
        cut = re.search(r"^#\[cfg\(test\)\]\s*\n\s*mod ", text, re.M)
        body = comment.sub("", text[: cut.start()] if cut else text)
        for n, line in enumerate(body.split("\n"), 1):
            if string_error.search(line):
                string_errors.append(f"{rel}:{n}: {line.strip()}")

unknown = {d for deps in graph.values() for d in deps if d not in graph}
if unknown:
    print(f"check-layers: references to unknown modules: {sorted(unknown)}", file=sys.stderr)

# Tarjan's strongly connected components: any component of size > 1 is a cycle.
index, low, on, stack, sccs, counter = {}, {}, set(), [], [], [0]


def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in sorted(graph[v]):
        if w not in graph:
            continue
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
        sccs.append(comp)


sys.setrecursionlimit(10000)
for v in sorted(graph):
    if v not in index:
        visit(v)

if "--dot" in sys.argv:
    print("digraph storgate {")
    for v in sorted(graph):
        for w in sorted(graph[v]):
            print(f'  "{v}" -> "{w}";')
    print("}")
else:
    for v in sorted(graph):
        print(f"{v:10} -> {', '.join(sorted(graph[v])) or '-'}")

cycles = [sorted(c) for c in sccs if len(c) > 1]
for e in string_errors:
    print(f"check-layers: a String error outside the CLI edge: {e}", file=sys.stderr)
if cycles:
    for c in cycles:
        edges = [f"{v}->{w}" for v in c for w in sorted(graph[v]) if w in c]
        print(f"check-layers: cycle between {', '.join(c)}: {' '.join(edges)}", file=sys.stderr)
if cycles or string_errors:
    sys.exit(1)
print("check-layers: no cycle between top-level modules, no String error outside the CLI edge")
