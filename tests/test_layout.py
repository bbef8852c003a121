"""The layers of the code hold (docs/design.md, the layers): every module imports only from its
own layer or below, through public names; no import cycle; nothing imports the command line;
few modules directly in the package."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "impresslearn"
KERNELS = ROOT / "kernels"  # installed as impresslearn.kernels

# The layer of each top-level module or subpackage (1 format ... 6 experiments and CLI).
LAYERS = {
    "files": 1,
    "choices": 1,
    "coding": 1,
    "seeding": 1,
    "format": 1,
    "memory": 1,
    "reference": 2,
    "native": 2,
    "kernels": 2,
    "primitives": 2,
    "checks": 2,
    "backends": 3,
    "ops": 3,
    "threads": 3,
    "layers": 4,
    "models": 4,
    "dense": 4,
    "checkpoint": 4,
    "kernel_masks": 4,
    "continual": 5,
    "methods": 5,
    "data": 5,
    "experiments": 6,
    "avalanche": 6,
    "doctor": 6,
    "cli": 6,
}
# memory (size guards), primitives (the declared table), checks (what they refuse), coding (cold storage)
MAX_TOP_LEVEL_MODULES = 18


def modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the package (kernels/ under impresslearn.kernels)."""
    out = {}
    for base, prefix in ((PACKAGE, "impresslearn"), (KERNELS, "impresslearn.kernels")):
        for path in base.rglob("*.py"):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([prefix, *parts])] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> list[tuple[str, list[str]]]:
    """(imported module, names taken from it) for every impresslearn import in a module."""
    tree = ast.parse(path.read_text())
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.startswith("impresslearn")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("impresslearn"):
                continue
            names = [a.name for a in node.names]
            # `from pkg import submodule` imports the submodule
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in known]
            found += [(s, []) for s in subs]
            found.append((target, [n for n in names if f"{target}.{n}" not in known]))
    return found


def private_attributes(name: str, path: Path, known: set[str]) -> list[str]:
    """`mod._private` uses in a module, where `mod` is another module of the package it imported."""
    tree = ast.parse(path.read_text())
    is_package = path.name == "__init__.py"
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = name.split(".")
            base = base[: len(base) - node.level + (1 if is_package else 0)] if node.level else []
            target = ".".join(base + ([node.module] if node.module else [])) if node.level else (node.module or "")
            for a in node.names:
                if f"{target}.{a.name}" in known:
                    aliases[a.asname or a.name] = f"{target}.{a.name}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name in known and a.asname:
                    aliases[a.asname] = a.name
    return [
        f"{aliases[n.value.id]}.{n.attr}"
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute)
        and isinstance(n.value, ast.Name)
        and n.value.id in aliases
        and n.attr.startswith("_")
        and not n.attr.startswith("__")
        and aliases[n.value.id] != name
    ]


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def graph():
    mods = modules()
    known = set(mods)
    return mods, {name: imports(name, path, known) for name, path in mods.items()}


def test_every_module_has_a_layer():
    mods, _ = graph()
    missing = sorted({m.split(".")[1] for m in mods if m.count(".") >= 1 and layer_of(m) is None})
    assert not missing, f"modules with no layer in this test's map: {missing}"


def test_imports_go_downward_through_public_names():
    _, edges = graph()
    bad = []
    for src, targets in edges.items():
        for dst, names in targets:
            if dst == "impresslearn" or src == "impresslearn":
                continue  # the package's __init__ gathers the public names
            if layer_of(dst) is not None and layer_of(src) is not None and layer_of(dst) > layer_of(src):
                bad.append(f"{src} (layer {layer_of(src)}) imports {dst} (layer {layer_of(dst)})")
            # modules of one package share their private names, and so does the package's __init__
            same_package = (dst.rsplit(".", 1)[0] == src.rsplit(".", 1)[0] and dst != src) or dst.rsplit(".", 1)[0] == src
            private = [n for n in names if n.startswith("_") and n != "__version__"]
            if private and not same_package:
                bad.append(f"{src} takes private {private} from {dst}")
    assert not bad, "\n".join(bad)


def test_no_private_attribute_of_another_module():
    mods = modules()
    bad = [f"{name}: {use}" for name, path in mods.items() for use in private_attributes(name, path, set(mods))]
    assert not bad, "\n".join(bad)


def test_nothing_imports_the_command_line():
    _, edges = graph()
    bad = [
        f"{src} imports {dst}"
        for src, targets in edges.items()
        for dst, _ in targets
        if dst.startswith("impresslearn.cli") and not src.startswith("impresslearn.cli")
    ]
    assert not bad, "\n".join(bad)


def test_no_import_cycle():
    mods, edges = graph()
    adj = {m: {d for d, _ in edges[m] if d in mods and d != m and not m.startswith(d + ".")} for m in mods}
    # `from impresslearn import x` from inside the package only reaches its __init__'s public names:
    # an edge to the package itself is a cycle only if __init__ imports back, which the walk finds.
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for d in sorted(adj[m]):
            if state.get(d) == "open":
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(d) :] + [d]))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = "done"

    for m in sorted(mods):
        if m not in state:
            visit(m)


def test_few_modules_directly_in_the_package():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top
