"""The house keeps its floors: a reading of the imports (AST only, nothing imported) of mrm_hf/, examples/ and
benchmarks/.

The layers of mrm_hf, bottom to top. A module imports only from its own layer or lower ones, function-level imports
included, and no import goes round in a circle:

0. `utils` (generic helpers: logging, choices, config overrides), `problem_types` (what a classification task's
   `labels` are: `ProblemType`, `MULTI_LABEL`, `SINGLE_LABEL`, shared by the loaders, the collator and the metrics)
   and `arguments` (what the scripts' command lines share: recipes, required options, range checks).
1. The model files shipped beside saved weights for `trust_remote_code`: `configuration_mrm`, `modeling_mrm`,
   `image_processing_mrm` (with the one radiograph reader), `tokenization_mrm`, `processing_mrm`. They import only
   each other (`from .module import X`) and third-party libraries.
2. `data` and `data.*`: reading records and datasets (`data.splits`: the published split lists and the image index
   that finds the images they name), collators (`collate_segmentation` among them), seeding, skips, record
   preparation.
3. `transforms` (`SegmentationTransform` among them), `metrics` (`pack_masks` too), `checkpoints`, `hub`, `figures`
   (`tint`), `convert` (`load_mrm_config`, `refuse_nonempty_output`), `timm_export` (which builds on `convert`, never
   the other way: `python -m mrm_hf.timm_export`), `segmentation` (model and loss), `report_filling`, `training`.
4. `pipelines`, `explain`, `predict`; the package's `__init__` may import anything.
The `evaluate` metric modules (`metric_modules/*/`) are loaded by path: they import nothing of the package.

No `_`-name crosses a file: neither `from module import _name` nor `module._name` on an imported module of the
project (mrm_hf, or a sibling script of examples/ or benchmarks/). What two files share is public.
"""

import ast
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mrm_hf"

SHIPPED = ("configuration_mrm", "modeling_mrm", "image_processing_mrm", "tokenization_mrm", "processing_mrm")
LAYERS = {
    "mrm_hf.utils": 0,
    "mrm_hf.problem_types": 0,
    "mrm_hf.arguments": 0,
    **{f"mrm_hf.{name}": 1 for name in SHIPPED},
    "mrm_hf.data": 2,  # and every mrm_hf.data.* module
    **{f"mrm_hf.{name}": 3 for name in ("transforms", "metrics", "checkpoints", "hub", "figures", "convert",
                                        "timm_export", "segmentation", "report_filling", "training")},
    **{f"mrm_hf.{name}": 4 for name in ("pipelines", "explain", "predict")},
    "mrm_hf": 4,
}
STANDALONE = "mrm_hf.metric_modules"  # loaded by path: no imports of the package at all


def module_name(path: Path) -> str:
    """The dotted name of a file of mrm_hf (a package's __init__ is the package)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int | None:
    """The layer of a module of mrm_hf, or None when the map does not place it."""
    if module in LAYERS:
        return LAYERS[module]
    if module.startswith("mrm_hf.data."):
        return LAYERS["mrm_hf.data"]
    return None


def is_package_module(module: str) -> bool:
    """Whether `mrm_hf...` names a file or package of mrm_hf."""
    path = ROOT.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


class Imports:
    """The project imports of one file: (line, text, target module, imported names) per import, and the names that
    stand for project modules in the file (for `module._name`)."""

    def __init__(self, path: Path):
        self.path = path
        self.relative_path = path.relative_to(ROOT).as_posix()
        self.tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        self.in_package = path.is_relative_to(PACKAGE)
        self.name = module_name(path) if self.in_package else None
        self.imports: list[tuple[int, str, str, list[str]]] = []
        self.module_aliases: set[str] = set()  # dotted names bound to project modules ("mrm_hf", "mimic", ...)
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if self.is_project(alias.name):
                        self.imports.append((node.lineno, ast.unparse(node), alias.name, []))
                        self.module_aliases.add(alias.asname or alias.name)
                        if alias.asname is None:  # `import mrm_hf.data.mimic` binds mrm_hf; reached as the full path
                            self.module_aliases.add(alias.name)
            elif isinstance(node, ast.ImportFrom):
                base = self.resolve(node)
                if base is None or not self.is_project(base):
                    continue
                names = [alias.name for alias in node.names]
                text = ast.unparse(node)
                plain = []
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    if self.is_project(submodule) and self.is_module(submodule):
                        self.imports.append((node.lineno, text, submodule, []))
                        self.module_aliases.add(alias.asname or alias.name)
                    else:
                        plain.append(alias.name)
                if plain or not names:
                    self.imports.append((node.lineno, text, base, plain))

    def resolve(self, node: ast.ImportFrom) -> str | None:
        """The absolute module of a from-import (relative ones resolved against this file's package)."""
        if node.level == 0:
            return node.module
        if not self.in_package:
            return None
        package = self.name.split(".") if self.path.name == "__init__.py" else self.name.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        return ".".join(package + ([node.module] if node.module else []))

    def local_script(self, name: str) -> Path | None:
        """A sibling script of examples/ or benchmarks/ that `import name` reaches, or None."""
        if self.in_package or "." in name:
            return None
        candidate = self.path.parent / f"{name}.py"
        return candidate if candidate.is_file() else None

    def is_project(self, module: str) -> bool:
        return module == "mrm_hf" or module.startswith("mrm_hf.") or self.local_script(module) is not None

    def is_module(self, module: str) -> bool:
        return is_package_module(module) if module.startswith("mrm_hf") else self.local_script(module) is not None

    def package_edges(self) -> list[tuple[int, str, str]]:
        """(line, text, target) of each import of a module of mrm_hf."""
        return [(line, text, target) for line, text, target, _ in self.imports if target.startswith("mrm_hf")]

    def private_imports(self) -> list[str]:
        """Each `_`-name this file takes from another project file, as '<file>:<line>: <import or use>'."""
        found = []
        for line, text, target, names in self.imports:
            for name in names:
                if name.startswith("_") and not name.startswith("__"):
                    found.append(f"{self.relative_path}:{line}: `{text}` imports the private {name} of {target}")
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                owner = ast.unparse(node.value)
                reached = owner.split(".")[0] in self.module_aliases and is_package_module(owner)  # mrm_hf.data.x
                if owner in self.module_aliases or reached:
                    found.append(f"{self.relative_path}:{node.lineno}: `{ast.unparse(node)}` reaches into the "
                                 f"private {node.attr} of the module {owner}")
        return found


def package_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def project_files() -> list[Path]:
    return package_files() + sorted((ROOT / "examples").glob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py"))


@pytest.fixture(scope="module")
def package() -> dict[str, Imports]:
    return {module_name(path): Imports(path) for path in package_files()}


def test_every_module_of_the_package_has_a_layer(package):
    unplaced = [f"{imports.relative_path} ({name})" for name, imports in package.items()
                if layer(name) is None and not name.startswith(STANDALONE)]
    assert not unplaced, f"tests/test_architecture.py LAYERS: expected a layer for every module; found none for " \
                         f"{unplaced}"


def test_no_module_imports_from_a_higher_layer(package):
    upward = []
    for name, imports in package.items():
        if name.startswith(STANDALONE):
            continue
        for line, text, target in imports.package_edges():
            if layer(target) is not None and layer(target) > layer(name):
                upward.append(f"{imports.relative_path}:{line}: `{text}` imports {target} (layer {layer(target)}) "
                              f"from layer {layer(name)}")
    assert not upward, "expected imports from the same or a lower layer only; found:\n" + "\n".join(upward)


def test_the_metric_modules_import_nothing_of_the_package(package):
    found = [f"{imports.relative_path}:{line}: `{text}`" for name, imports in package.items()
             if name.startswith(STANDALONE) for line, text, _ in imports.package_edges()]
    assert not found, "expected metric modules (loaded by path) without imports of mrm_hf; found:\n" + "\n".join(found)


def test_the_shipped_model_files_import_only_each_other(package):
    shipped = {f"mrm_hf.{name}" for name in SHIPPED}
    found = []
    for name in sorted(shipped):
        imports = package[name]
        for line, text, target, _ in imports.imports:
            relative = any(isinstance(node, ast.ImportFrom) and node.level == 1 and node.lineno == line
                           for node in ast.walk(imports.tree))
            if target not in shipped or not relative:
                found.append(f"{imports.relative_path}:{line}: `{text}` (imports {target})")
    assert not found, ("expected the shipped model files to import only each other, as `from .module import X`; "
                       "found:\n" + "\n".join(found))


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of the graph as [a, b, ..., a], or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node], _ = "open", stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node], _ = "done", stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle(package):
    graph = {name: {target for _, _, target in imports.package_edges() if target != name}
             for name, imports in package.items()}
    cycle = find_cycle(graph)
    where = []
    if cycle:
        for source, target in zip(cycle, cycle[1:]):
            line, text = next((l, t) for l, t, g in package[source].package_edges() if g == target)
            where.append(f"{package[source].relative_path}:{line}: `{text}`")
    assert cycle is None, f"expected no import cycle; found {' -> '.join(cycle or [])}:\n" + "\n".join(where)


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_private_name_crosses_a_file():
    found = [problem for path in project_files() for problem in Imports(path).private_imports()]
    assert not found, "expected no `_`-name imported across files; found:\n" + "\n".join(found)
