"""The package's folders are layers: a module imports only from its own folder and from lower layers.

The layering is written down in docs/architecture.md; this test reads every module's imports (as text,
with `ast`, nothing is imported) and fails on an import that points up or sideways.
"""

import ast
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "tf_twostage")

# Lowest first. Folders on one line are peers: they may not import each other.
LAYERS = (
    ("utils",),
    ("data", "models"),
    ("training",),
    ("baselines", "stage1", "stage2"),
    ("config",),
    ("serving",),
    ("reporting",),
    ("runs",),
    ("programs",),
)
RANK = {folder: rank for rank, folders in enumerate(LAYERS) for folder in folders}


def package_imports(path: str):
    """(line, imported top-level folder of tf_twostage) for every `tf_twostage.*` import in a file."""
    with open(path, encoding="utf-8") as file:
        tree = ast.parse(file.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tf_twostage":
            parts = node.module.split(".")
            if len(parts) > 1:
                yield node.lineno, parts[1]
            else:  # `from tf_twostage import X`: X is the folder
                for alias in node.names:
                    yield node.lineno, alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "tf_twostage" and len(parts) > 1:
                    yield node.lineno, parts[1]


def module_files(package: str):
    for folder in sorted(os.listdir(package)):
        full = os.path.join(package, folder)
        if os.path.isdir(full) and folder != "__pycache__":
            for dirpath, _, names in os.walk(full):
                for name in sorted(names):
                    if name.endswith(".py"):
                        yield folder, os.path.join(dirpath, name)


def layering_violations(package: str = PACKAGE):
    root = os.path.dirname(package)
    problems = []
    for folder, path in module_files(package):
        relative = os.path.relpath(path, root)
        if folder not in RANK:
            problems.append(f"{relative}: folder {folder!r} has no layer in LAYERS (docs/architecture.md)")
            continue
        for line, target in package_imports(path):
            if target == folder:
                continue
            if target not in RANK:
                problems.append(f"{relative}:{line} imports tf_twostage.{target}, which is in no layer")
            elif RANK[target] >= RANK[folder]:
                how = "a peer" if RANK[target] == RANK[folder] else "a higher layer"
                problems.append(f"{relative}:{line} imports {target}/ ({how}) from {folder}/")
    return problems


def test_every_import_points_down_the_layers():
    assert layering_violations() == []


def test_no_module_sits_flat_at_the_top_of_the_package():
    flat = [name for name in os.listdir(PACKAGE) if name.endswith(".py") and name != "__init__.py"]
    assert flat == []


def test_the_checker_catches_an_upward_and_a_sideways_import(tmp_path):
    fake = tmp_path / "tf_twostage"
    (fake / "data").mkdir(parents=True)
    (fake / "runs").mkdir()
    (fake / "data" / "bad.py").write_text("from tf_twostage.runs.experiment import run_experiment\n")
    (fake / "runs" / "good.py").write_text("from tf_twostage.data import noise\n")
    (fake / "stage1").mkdir()
    (fake / "stage1" / "peer.py").write_text("import tf_twostage.stage2.trainer\n")
    assert layering_violations(str(fake)) == [
        "tf_twostage/data/bad.py:1 imports runs/ (a higher layer) from data/",
        "tf_twostage/stage1/peer.py:1 imports stage2/ (a peer) from stage1/",
    ]


def test_the_layers_in_the_test_match_docs_architecture():
    with open(os.path.join(ROOT, "docs", "architecture.md"), encoding="utf-8") as file:
        text = file.read()
    for folders in LAYERS:
        for folder in folders:
            assert f"`{folder}/`" in text, f"docs/architecture.md does not describe {folder}/"


def _source_files():
    for top in ("tf_twostage", "bin", "configs", "benchmarks", "tests"):
        for dirpath, _, names in os.walk(os.path.join(ROOT, top)):
            for name in names:
                if name.endswith(".py"):
                    yield os.path.join(dirpath, name)
    yield os.path.join(ROOT, "setup.cfg")
    yield os.path.join(ROOT, "README.md")


def test_what_the_code_cites_is_in_the_repository():
    outside = re.compile(r"TRAPS\.md|PROTOCOL\.md|PROTOCOL section|\.\./shared|shared/docs")
    cited = re.compile(r"\bdocs/([\w-]+\.md)")
    problems = []
    for path in _source_files():
        if path == os.path.abspath(__file__):
            continue
        with open(path, encoding="utf-8") as file:
            for number, line in enumerate(file, 1):
                if outside.search(line):
                    problems.append(f"{os.path.relpath(path, ROOT)}:{number} cites a document outside the repository")
                for name in cited.findall(line):
                    if not os.path.exists(os.path.join(ROOT, "docs", name)):
                        problems.append(f"{os.path.relpath(path, ROOT)}:{number} cites docs/{name}, which is missing")
    assert problems == []
