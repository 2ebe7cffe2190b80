"""Layers import one way (docs/architecture.md, "Layers"): every module of src/tunelab, parsed with
``ast`` (imports inside functions included), imports only modules of its own layer or below, and a
task family never imports another family."""

import ast
import pathlib

import pytest

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"

# top to bottom; a module belongs to the first layer one of whose prefixes it starts with
LAYERS = [
    ("app", ("tunelab.cli", "tunelab.__main__", "tunelab.compare", "tunelab.report", "tunelab.analysis",
             "tunelab.pretrain")),
    ("run", ("tunelab.runner", "tunelab.resume", "tunelab.resolve", "tunelab.predict", "tunelab.export")),
    ("tasks", ("tunelab.tasks",)),
    ("methods", ("tunelab.methods",)),
    ("train", ("tunelab.train",)),
    ("models / metrics / results", ("tunelab.models", "tunelab.metrics", "tunelab.results")),
    ("foundation", ("tunelab.config", "tunelab.registry", "tunelab.errors", "tunelab.textio", "tunelab.cache",
                    "tunelab")),
]
SHARED_TASK_MODULES = ("base", "supervised", "splits")  # the task contract, not a family


def layer_of(module: str) -> int:
    for i, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    raise AssertionError(f"{module}: in no layer (add it to LAYERS and to docs/architecture.md)")


def family_of(module: str) -> str | None:
    parts = module.split(".")
    if (len(parts) >= 3 and parts[:2] == ["tunelab", "tasks"] and parts[2] not in SHARED_TASK_MODULES
            and (SRC / "tunelab" / "tasks" / parts[2]).is_dir()):
        return parts[2]
    return None


def imported_modules(source: str, module: str, is_package: bool) -> list:
    """(line, imported module) for every tunelab import in ``source``, relative ones resolved; ``from X
    import name`` counts as importing ``X.name`` (a submodule or a name in X: both sit in X's layer)."""
    out = []
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "tunelab" or target.startswith("tunelab."):
                out += [(node.lineno, f"{target}.{a.name}") for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "tunelab"]
    return out


def violations(source: str, module: str, is_package: bool = False) -> list:
    """Lines of ``source`` (module ``module``) that import upward or into another task family."""
    bad = []
    here, fam = layer_of(module), family_of(module)
    for line, target in imported_modules(source, module, is_package):
        there = layer_of(target)
        if there < here:
            bad.append(f"{module}:{line} imports {target} ({LAYERS[here][0]} -> {LAYERS[there][0]}: upward)")
        other = family_of(target)
        if fam and other and other != fam:
            bad.append(f"{module}:{line} imports {target} (family {fam} -> family {other})")
    return bad


def all_modules():
    for path in sorted((SRC / "tunelab").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        yield ".".join(parts[:-1] if is_package else parts), is_package, path


def test_every_import_points_down_the_layers():
    bad = []
    for module, is_package, path in all_modules():
        bad += violations(path.read_text(encoding="utf-8"), module, is_package)
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


@pytest.mark.parametrize("source, module, why", [
    # config (foundation) reaching up to the task registry, inside a function as it once did
    ("def build():\n    from .tasks import get_task\n", "tunelab.config", "upward"),
    ("from ..tasks.supervised import SupervisedTask\n", "tunelab.train.distributed", "upward"),
    ("from ...runner import check_output_dir\n", "tunelab.tasks.image.dino", "upward"),
    ("from ..keyphrase.data import stem_word\n", "tunelab.tasks.docrep.task", "family docrep -> family keyphrase"),
])
def test_the_check_catches_an_upward_import(source, module, why):
    found = violations(source, module)
    assert len(found) == 1 and why in found[0], found


def test_downward_and_same_layer_imports_pass():
    ok = ("from ...train.loop import train\nfrom ..base import Task\nfrom .data import read\n"
          "from ...models.aliases import register_alias\n")
    assert violations(ok, "tunelab.tasks.keyphrase.task") == []
    assert violations("from .tasks import get_task\nfrom .methods import get_method\n", "tunelab.resolve") == []


def circles(graph: dict) -> list:
    """The import circles of ``graph`` (module -> modules it imports): strongly connected components of
    more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def import_graph() -> dict:
    """module -> the tunelab modules it imports (``from X import name`` -> X.name when that is a module,
    else X); a submodule importing its own package is left out (the package's face, not a circle)."""
    sources = {module: (path, is_package) for module, is_package, path in all_modules()}
    graph = {}
    for module, (path, is_package) in sources.items():
        targets = set()
        for _, target in imported_modules(path.read_text(encoding="utf-8"), module, is_package):
            while target not in sources and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in sources and target != module and not module.startswith(target + "."):
                targets.add(target)
        graph[module] = targets
    return graph


def test_no_two_modules_import_each_other_even_round_a_circle():
    # within a layer the layer check allows both directions; a circle (a -> b -> a), even through imports
    # inside functions, means neither module can be read or tested without the other
    assert circles(import_graph()) == []


def test_the_circle_check_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert circles(graph) == [["a", "b", "c"]]
    # the report's old circle, as it was: findings took TaskSummary from tables, tables took verdict back
    assert circles({"report.findings": {"report.tables"}, "report.tables": {"report.findings", "report.stats"},
                    "report.stats": set()}) == [["report.findings", "report.tables"]]
