"""The package's import structure, read with ``ast`` (nothing is imported): imports run downward
through the agreed layers, no package-level cycle, CLI glue is imported only by the dispatcher,
imports inside functions are kept for optional heavy dependencies (each with a comment saying why),
and no module is longer than 600 lines."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "primekit"
MAX_LINES = 600

#: Lowest first. A module may import its own unit and units of lower layers only (so units that
#: share a layer never import each other); a unit is a top-level module or subpackage of primekit.
LAYERS: list[tuple[str, set[str]]] = [
    ("errors and paths", {"__init__", "errors", "paths"}),
    ("files and commands", {"io", "command_line"}),
    ("configuration", {"config"}),
    ("verifiers and toy", {"verifiers", "toy"}),
    ("models and benchmarks", {"models", "problems"}),
    ("generation, prompts, statistics", {"generation", "prompts", "statistics"}),
    ("sampling and arguments", {"sampling", "arguments"}),
    ("prm", {"prm"}),
    ("bon", {"bon"}),
    ("apps", {"eval", "rl"}),
    ("dispatcher", {"cli"}),
]
#: Units with a narrower allowance than their layer: the toy world is self-contained.
ONLY = {"toy": {"errors", "paths"}}
#: Third-party packages that are optional or slow to import: only these, and primekit modules that
#: load them when imported, may be imported inside a function (so that ``--help``, a bad option and
#: the pure-Python paths stay fast, and optional extras stay optional).
HEAVY = {"torch", "transformers", "trl", "accelerate", "peft", "datasets", "vllm", "sympy", "math_verify",
         "matplotlib", "scipy", "tensorboard", "wandb", "latex2sympy2_extended", "huggingface_hub",
         "safetensors", "evaluate"}
#: transformers and TRL load lazily (their top-level import pulls in neither torch nor a model), and
#: every command's option parser is TRL's: importing them alone does not make a primekit module heavy.
LIGHT_AT_TOP_LEVEL = {"transformers", "trl"}
#: Modules run as scripts in another interpreter, whose imports name that interpreter's modules:
#: the published graders' worker (their code on its path, in their own virtualenv) and the code
#: sandbox's harness (a folder run with ``python -I``, its modules import each other by name).
SCRIPT_MODULES = ("primekit.eval._published_worker", "primekit.verifiers.code.harness")


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer(unit: str) -> int:
    for index, (_, units) in enumerate(LAYERS):
        if unit in units:
            return index
    raise AssertionError(f"primekit.{unit} is in no layer: add it to LAYERS in {Path(__file__).name}")


def _imports(module: str, path: Path):
    """(line, imported module, inside a function, has a comment) for each import in ``path``."""
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    functions = [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    nested = {id(child) for function in functions for child in ast.walk(function) if child is not function}
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1])
                targets = [f"{base}.{node.module}" if node.module else base]
            else:
                targets = [node.module]
            # `from primekit.x import y` may name a submodule y
            targets = [f"{t}.{alias.name}" if f"{t}.{alias.name}" in MODULES else t
                       for t in targets for alias in node.names]
        else:
            continue
        commented = any("#" in lines[i] for i in range(max(node.lineno - 2, 0), node.end_lineno))
        for target in targets:
            yield node.lineno, target, id(node) in nested, commented


IMPORTS = {module: list(_imports(module, path)) for module, path in MODULES.items()}


def _heavy_modules() -> set[str]:
    """primekit modules whose import loads a heavy package, directly or through other primekit modules."""
    heavy = {module for module, imports in IMPORTS.items() for _, target, inside, _ in imports
             if not inside and target.split(".")[0] in HEAVY - LIGHT_AT_TOP_LEVEL}
    while True:
        more = {module for module, imports in IMPORTS.items() if module not in heavy and any(
            not inside and (target in heavy or any(target.startswith(h + ".") for h in heavy))
            for _, target, inside, _ in imports)}
        if not more:
            return heavy
        heavy |= more


HEAVY_MODULES = _heavy_modules()


def test_every_module_has_a_layer():
    for module in MODULES:
        _layer(_unit(module))


def test_imports_run_downward():
    wrong = []
    for module, imports in IMPORTS.items():
        unit = _unit(module)
        for line, target, _, _ in imports:
            if not target.startswith("primekit"):
                continue
            other = _unit(target)
            if other == unit:
                continue
            allowed = other in ONLY[unit] if unit in ONLY else _layer(other) < _layer(unit)
            if not allowed:
                wrong.append(f"{MODULES[module].relative_to(PACKAGE.parent)}:{line}: {module} imports {target}")
    assert not wrong, "imports that run upward or sideways:\n" + "\n".join(wrong)


def test_no_package_level_cycle():
    graph = defaultdict(set)
    for module, imports in IMPORTS.items():
        for _, target, _, _ in imports:
            if target.startswith("primekit") and _unit(target) != _unit(module):
                graph[_unit(module)].add(_unit(target))
    visiting, done = set(), set()

    def visit(unit: str, trail: list[str]) -> None:
        if unit in visiting:
            pytest.fail("package cycle: " + " -> ".join(trail[trail.index(unit):] + [unit]))
        if unit in done:
            return
        visiting.add(unit)
        for other in sorted(graph[unit]):
            visit(other, trail + [unit])
        visiting.discard(unit)
        done.add(unit)

    for unit in sorted(graph):
        visit(unit, [])


def test_command_modules_are_imported_only_by_the_dispatcher():
    wrong = [f"{MODULES[module].relative_to(PACKAGE.parent)}:{line}: {module} imports {target}"
             for module, imports in IMPORTS.items() for line, target, _, _ in imports
             if ".commands" in target and module != "primekit.cli"
             and not module.startswith(target.split(".commands")[0] + ".commands")]
    assert not wrong, "CLI glue imported outside primekit.cli:\n" + "\n".join(wrong)


def test_imports_inside_functions_are_heavy_optional_and_explained():
    wrong = []
    for module, imports in IMPORTS.items():
        for line, target, inside, commented in imports:
            if not inside or module.startswith(SCRIPT_MODULES):
                continue
            if module == "primekit.cli" and target.startswith("primekit"):
                continue  # the dispatcher loads a tool's module only when that tool runs
            where = f"{MODULES[module].relative_to(PACKAGE.parent)}:{line}: {target}"
            if target.split(".")[0] not in HEAVY and target not in HEAVY_MODULES:
                wrong.append(f"{where} (not an optional heavy dependency: import it at the top)")
            elif not commented:
                wrong.append(f"{where} (say why it is imported here, in a comment)")
    assert not wrong, "imports inside functions:\n" + "\n".join(wrong)


def test_no_module_is_longer_than_the_limit():
    long = {str(path.relative_to(PACKAGE.parent)): n for path in MODULES.values()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
