"""Conventions of the test suite itself: every parametrized row has a readable id.

A failing row is named in the test report by its id, so ``test_decide[credentials-with-star]``
says what broke where ``test_decide[origin3-GET-...]`` or ``test_chart[override7-max_age]`` does
not. Two checks: the source (an AST scan of every ``parametrize`` call under tests/), and what
pytest actually collects (no ``argname + index`` fragment, pytest's fallback for a value it
cannot name).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
# A literal short enough to read as a name in a test id (pytest uses str and bytes values as they are).
MAX_NAME_CHARS = 40


def _python_files() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "node_modules" not in p.parts)


class _Module:
    """One parsed file of tests/: its module-level bindings and the names it imports from tests/."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tree = ast.parse(path.read_text(), filename=str(path))
        self.bindings: dict[str, ast.expr] = {}
        self.imports: dict[str, tuple[Path, str]] = {}
        self.row_builders: set[str] = set()  # functions returning pytest.param(..., id=...)
        for node in self.tree.body:
            if isinstance(node, ast.FunctionDef):
                returns = [n.value for n in ast.walk(node) if isinstance(n, ast.Return)]
                if returns and all(value is not None and _is_param_with_id(value) for value in returns):
                    self.row_builders.add(node.name)
            elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                self.bindings[node.targets[0].id] = node.value
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
                self.bindings[node.target.id] = node.value
            elif isinstance(node, ast.ImportFrom) and (source := self._source(node)) is not None:
                for alias in node.names:
                    self.imports[alias.asname or alias.name] = (source, alias.name)

    def _source(self, node: ast.ImportFrom) -> Path | None:
        """The file under tests/ that ``node`` imports from, if any."""
        if not node.module:
            return None
        if node.level:
            base = self.path.parent
            for _ in range(node.level - 1):
                base = base.parent
            return _module_file(base, node.module)
        if node.module.split(".")[0] == TESTS.name:
            return _module_file(TESTS.parent, node.module)
        return None


def _module_file(base: Path, dotted: str) -> Path | None:
    target = base.joinpath(*dotted.split("."))
    for candidate in (target.with_suffix(".py"), target / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


class _Scan:
    """Whether a parametrize call's rows get readable ids, following module-level names across tests/."""

    def __init__(self) -> None:
        self.modules: dict[Path, _Module] = {}

    def module(self, path: Path) -> _Module:
        if path not in self.modules:
            self.modules[path] = _Module(path)
        return self.modules[path]

    def resolve(self, module: _Module, node: ast.expr, depth: int = 0) -> tuple[_Module, ast.expr]:
        """What a module-level name is bound to (through imports from tests/), else the node itself."""
        while isinstance(node, ast.Name) and depth < 10:
            depth += 1
            if node.id in module.bindings:
                node = module.bindings[node.id]
            elif node.id in module.imports:
                path, name = module.imports[node.id]
                module = self.module(path)
                node = ast.Name(id=name, ctx=ast.Load())
            else:
                break
        return module, node

    def is_name(self, module: _Module, node: ast.expr) -> bool:
        """A value pytest turns into a readable id by itself: a short literal or an f-string."""
        if isinstance(node, ast.JoinedStr):
            return True
        if not isinstance(node, ast.Constant):
            return False
        value = node.value
        if isinstance(value, (str, bytes)):
            return len(value) <= MAX_NAME_CHARS
        return value is None or isinstance(value, (int, float, bool))

    def are_names(self, module: _Module, node: ast.expr) -> bool:
        """A collection whose items are names: short literals, a dict's string keys, names spliced in from another."""
        module, node = self.resolve(module, node)
        if isinstance(node, ast.Dict):
            return bool(node.keys) and all(
                self.are_names(module, value) if key is None else _is_key(key)
                for key, value in zip(node.keys, node.values, strict=True)
            )
        if isinstance(node, ast.DictComp):
            return _is_key(node.key)
        if isinstance(node, ast.Call) and not node.keywords:
            if isinstance(node.func, ast.Name) and node.func.id in {"list", "tuple", "sorted"} and len(node.args) == 1:
                return self.are_names(module, node.args[0])
            if isinstance(node.func, ast.Attribute) and node.func.attr == "keys" and not node.args:
                return self.are_names(module, node.func.value)
        if isinstance(node, (ast.GeneratorExp, ast.ListComp)):
            return self.is_name(module, node.elt)
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            return all(
                self.are_names(module, elt.value) if isinstance(elt, ast.Starred) else self.is_name(module, elt)
                for elt in node.elts
            )
        return False

    def rows_have_ids(self, module: _Module, node: ast.expr) -> bool:
        """Every row is ``pytest.param(..., id=...)`` (or a module function's that returns one), written out,
        built in a comprehension, spliced in or concatenated."""
        module, node = self.resolve(module, node)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return self.rows_have_ids(module, node.left) and self.rows_have_ids(module, node.right)
        if isinstance(node, (ast.ListComp, ast.GeneratorExp)):
            return self.is_row_with_id(module, node.elt)
        if not isinstance(node, (ast.List, ast.Tuple)) or not node.elts:
            return False
        return all(
            self.rows_have_ids(module, elt.value) if isinstance(elt, ast.Starred) else self.is_row_with_id(module, elt)
            for elt in node.elts
        )

    def is_row_with_id(self, module: _Module, node: ast.expr) -> bool:
        if _is_param_with_id(node):
            return True
        return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in module.row_builders

    def readable(self, module: _Module, call: ast.Call) -> bool:
        if any(k.arg == "ids" for k in call.keywords):
            return True
        values = (
            call.args[1] if len(call.args) > 1 else next((k.value for k in call.keywords if k.arg == "argvalues"), None)
        )
        if values is None:
            return True
        return self.rows_have_ids(module, values) or self.are_names(module, values)


def _is_key(node: ast.expr) -> bool:
    """A dict key written as a string: a name its author chose, whatever its length."""
    return isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str))


def _is_param_with_id(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Call)
        and getattr(node.func, "attr", None) == "param"
        and any(k.arg == "id" for k in node.keywords)
    )


def tables_without_ids() -> list[str]:
    scan = _Scan()
    found = []
    for path in _python_files():
        module = scan.module(path)
        for node in ast.walk(module.tree):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", None) == "parametrize"
                and not scan.readable(module, node)
            ):
                found.append(f"{path.relative_to(TESTS.parent)}:{node.lineno}")
    return found


def test_every_parametrize_table_has_readable_ids() -> None:
    """Rows are ``pytest.param(..., id=...)``, the call passes ``ids=``, or the values are names themselves."""
    missing = tables_without_ids()
    assert not missing, (
        "parametrize tables without readable ids (add ids= or pytest.param(..., id=...)):\n" + "\n".join(missing)
    )


class _Collected:
    """A plugin for a nested collection: the parametrized items pytest would run."""

    def __init__(self) -> None:
        self.items: list[pytest.Item] = []

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.items = list(session.items)


def generated_fragments(item: pytest.Item) -> list[str]:
    """The parts of ``item``'s id that pytest made from an argument's name and the row's index (``forwarded9``)."""
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return []
    fallback = re.compile("|".join(rf"{re.escape(name)}\d+" for name in callspec.params))
    return [part for part in callspec.id.split("-") if fallback.fullmatch(part)]


def test_collected_ids_have_no_generated_fragments() -> None:
    """Collect the whole suite in-process (every tier, starting nothing) and read the ids pytest made."""
    collected = _Collected()
    status = pytest.main(
        [str(TESTS), "--collect-only", "-qq", "-p", "no:cacheprovider", "-m", ""],
        plugins=[collected],
    )
    assert status == pytest.ExitCode.OK, status
    assert collected.items
    generated = {item.nodeid: fragments for item in collected.items if (fragments := generated_fragments(item))}
    assert not generated, "ids pytest generated from argname + index:\n" + "\n".join(
        f"{nodeid}: {', '.join(fragments)}" for nodeid, fragments in sorted(generated.items())
    )


def test_the_fragment_check_sees_what_pytest_generates() -> None:
    """The pattern matches pytest's fallback and nothing a readable id looks like."""

    class Spec:
        params = {"forwarded": None, "depth": None}
        id = "depth1-forwarded9-rightmost"

    class Item:
        callspec = Spec()

    assert generated_fragments(Item()) == ["depth1", "forwarded9"]  # type: ignore[arg-type]
    Spec.id = "depth-1-rightmost-of-two"
    assert generated_fragments(Item()) == []  # type: ignore[arg-type]


PACKAGE = Path(__file__).resolve().parents[1] / "cors_handler"
MAX_MODULE_LINES = 450


def test_every_module_is_small_enough_to_read_in_one_sitting() -> None:
    lines = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {module: n for module, n in lines.items() if n > MAX_MODULE_LINES} == {}


def test_the_modules_live_in_their_layers() -> None:
    """Besides __init__ and __main__ (the entry point), every module is in a layer of pyproject's contract."""
    assert sorted(p.name for p in PACKAGE.glob("*.py")) == ["__init__.py", "__main__.py"]
    layers = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert layers == ["config", "cors", "http", "serve", "tools"]
