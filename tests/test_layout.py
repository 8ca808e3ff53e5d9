"""The tree keeps its architecture: every import follows the floors the packages declare.

Each package's `__init__` docstring (and `runner/errors.py`'s) ends with a `May import:` line; a
module may import its own package and what the nearest such line names. Nothing under `runner/`
imports `prep/`, no private name crosses a package, and the floors form no cycle.
"""
import ast
import re
from pathlib import Path

import pytest

from helpers import ROOT

PACKAGES = ("runner", "prep")
DECLARATION = re.compile(r"^May import:(.*?)(?:\n\s*\n|\Z)", re.MULTILINE | re.DOTALL)


def module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_files():
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def declared_imports(text):
    """The names a docstring's `May import:` line lists (None when it has no such line)."""
    docstring = ast.get_docstring(ast.parse(text)) or ""
    match = DECLARATION.search(docstring)
    if match is None:
        return None
    listed = match.group(1).replace("(nothing)", "")
    return tuple(name.strip() for name in listed.replace("\n", " ").split(",") if name.strip())


def declarations():
    """{scope: allowed imports}: a scope is a package (from its __init__) or a module."""
    found = {}
    for path in source_files():
        allowed = declared_imports(path.read_text())
        if allowed is not None:
            found[module_name(path)] = allowed
    return found


def inside(name, scope):
    return name == scope or name.startswith(scope + ".")


def package_of(module, path):
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def imports_of(path):
    """(imported module, imported names, line) of every import statement, at any depth; the
    tree imports absolutely (test_imports_are_absolute), so each names its floor."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, (), node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", tuple(alias.name for alias in node.names),
                          node.lineno))
    return found


def is_module(name):
    path = ROOT / Path(*name.split("."))
    return path.is_dir() or path.with_suffix(".py").exists()


def targets(imported, names):
    """The modules an import reaches: `from runner.net import builder` reaches
    runner.net.builder; `from runner.net.builder import Net` reaches runner.net.builder."""
    submodules = [f"{imported}.{name}" for name in names if is_module(f"{imported}.{name}")]
    return submodules or [imported]


def undeclared(imports, scope, allowed):
    """(line, target) of each import reaching outside `scope` and what it may import."""
    return [(line, target) for imported, names, line in imports
            for target in targets(imported, names)
            if not inside(target, scope) and not any(inside(target, name) for name in allowed)]


def own_imports():
    """(importing module, imported module, names, where) of every import between our packages."""
    found = []
    for path in source_files():
        module = module_name(path)
        for imported, names, line in imports_of(path):
            if imported.split(".")[0] in PACKAGES:
                found.append((module, imported, names, f"{path.relative_to(ROOT)}:{line}"))
    return found


def scope_of(module, scopes):
    """The innermost declaring scope holding `module` (None: undeclared, e.g. the commands)."""
    holding = [scope for scope in scopes if inside(module, scope)]
    return max(holding, key=len) if holding else None


def test_every_floor_declares_what_it_may_import():
    scopes = declarations()
    for package in ("runner.config", "runner.files", "runner.imaging", "runner.net",
                    "runner.net.layers", "runner.train", "runner.infer", "runner.score",
                    "runner.errors", "prep"):
        assert package in scopes, f"{package} declares no `May import:` line"
    for scope, allowed in scopes.items():
        for name in allowed:
            assert name.split(".")[0] in PACKAGES and (
                (ROOT / Path(*name.split("."))).is_dir()
                or (ROOT / Path(*name.split("."))).with_suffix(".py").exists()), \
                f"{scope} declares {name!r}, which is no module of ours"


def test_imports_are_absolute():
    relative = [f"{path.relative_to(ROOT)}:{node.lineno}" for path in source_files()
                for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, ast.ImportFrom) and node.level]
    assert not relative, f"relative imports at {relative}"


def test_runner_never_imports_prep():
    wrong = [where for module, imported, _, where in own_imports()
             if inside(module, "runner") and inside(imported, "prep")]
    assert not wrong, f"runner imports prep at {wrong}"


def test_imports_follow_the_declared_floors():
    scopes = declarations()
    wrong = []
    for path in source_files():
        module = module_name(path)
        scope = scope_of(module, scopes)
        if scope is not None:
            ours = [found for found in imports_of(path) if found[0].split(".")[0] in PACKAGES]
            wrong += [f"{path.relative_to(ROOT)}:{line}: {module} imports {target}, which "
                      f"{scope} does not declare" for line, target
                      in undeclared(ours, scope, scopes[scope])]
    assert not wrong, "\n".join(wrong)


def test_the_floors_form_no_cycle():
    """Declared floors, as a graph between scopes, have a topological order."""
    scopes = declarations()
    graph = {scope: {scope_of(name, scopes) or name for name in allowed} - {scope}
             for scope, allowed in scopes.items()}
    order, visiting, done = [], set(), set()

    def visit(scope, path):
        if scope in done:
            return
        assert scope not in visiting, f"cycle between floors: {' -> '.join(path + [scope])}"
        visiting.add(scope)
        for lower in graph.get(scope, ()):
            if not inside(lower, scope):
                visit(lower, path + [scope])
        visiting.discard(scope)
        done.add(scope)
        order.append(scope)

    for scope in graph:
        visit(scope, [])
    assert set(graph) <= set(order)


def test_no_private_name_crosses_a_package():
    wrong = []
    for path in source_files():
        module = module_name(path)
        package = package_of(module, path)
        tree = ast.parse(path.read_text())
        modules_bound = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PACKAGES:
                for alias in node.names:
                    reached = f"{node.module}.{alias.name}"
                    if is_private(alias.name) and node.module != package and \
                            not inside(node.module, package):
                        wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} imports "
                                     f"{node.module}.{alias.name}")
                    modules_bound[alias.asname or alias.name] = reached
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                    node.value.id in modules_bound and is_private(node.attr):
                owner = modules_bound[node.value.id].rpartition(".")[0]
                if owner != package:
                    wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} uses "
                                 f"{modules_bound[node.value.id]}.{node.attr}")
    assert not wrong, "\n".join(wrong)


def is_private(name):
    return name.startswith("_") and not name.startswith("__")


@pytest.mark.parametrize("text, wrong", [
    ("from runner.infer import deploy\n", [(5, "runner.infer.deploy")]),
    ("from runner.infer.deploy import load_for_inference\n", [(5, "runner.infer.deploy")]),
    ("from runner import errors\nfrom runner.config import schema\n", []),
    ("import prep.cli\n", [(5, "prep.cli")]),
])
def test_the_check_tells_a_wrong_import(tmp_path, text, wrong):
    """The checker on a module of a made-up floor 'runner.made_up' that may import errors and
    config: what it lets through and what it reports."""
    path = tmp_path / "floor.py"
    path.write_text('"""A made-up floor.\n\nMay import: runner.errors, runner.config\n"""\n' + text)
    allowed = declared_imports(path.read_text())
    assert allowed == ("runner.errors", "runner.config")
    assert undeclared(imports_of(path), "runner.made_up", allowed) == wrong

