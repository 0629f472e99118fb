"""The house plan (pyproject.toml, ``[tool.importlinter]``) holds: no module imports a layer above it, function-local
imports included, and every module of the package has its place in the plan."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports() -> str:
    found = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if found is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    return found


def _contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]["contracts"]


def _names(contract: dict) -> set[str]:
    return {name.strip() for layer in contract["layers"] for name in layer.split("|")}


def _children(folder: Path) -> set[str]:
    """The modules and subpackages directly inside a package folder."""
    found = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
    return found | {p.name for p in folder.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}


def test_no_module_imports_a_layer_above_it() -> None:
    done = subprocess.run([_lint_imports(), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert f"{len(_contracts())} kept, 0 broken" in done.stdout


def test_every_module_has_a_place_in_the_plan() -> None:
    contracts = _contracts()
    (top,) = [c for c in contracts if "containers" not in c]
    assert {f"qdrant_distill.{m}" for m in _children(ROOT / "qdrant_distill")} - _names(top) == set(), \
        "modules or folders of qdrant_distill missing from the top contract in pyproject.toml"
    inner = {c["containers"][0]: _names(c) for c in contracts if "containers" in c}
    for folder in (ROOT / "qdrant_distill").rglob("__init__.py"):
        package = ".".join(folder.parent.relative_to(ROOT).parts)
        children = _children(folder.parent) - {"__pycache__"}
        if package == "qdrant_distill" or package.endswith("connectors") or not children or package.endswith("demo_data"):
            continue
        assert package in inner, f"{package} has no contract of its own in pyproject.toml"
        assert children - inner[package] == set(), f"modules of {package} missing from its contract"


def test_an_upward_import_inside_a_function_breaks_the_plan(tmp_path: Path) -> None:
    # fault injection on a copy: a function-local import of the migration pipeline from the journal must be caught
    copy = tmp_path / "house"
    shutil.copytree(ROOT / "qdrant_distill", copy / "qdrant_distill", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "connectors", copy / "connectors", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    journal = copy / "qdrant_distill" / "migration" / "journal.py"
    journal.write_text(journal.read_text(encoding="utf-8") + "\n\ndef _upward() -> None:\n"
                       "    from qdrant_distill.migration.pipeline import migrate  # noqa: F401\n", encoding="utf-8")
    done = subprocess.run([_lint_imports(), "--no-cache"], cwd=copy, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(copy), "PATH": str(Path(sys.executable).parent)})
    assert done.returncode != 0 and "qdrant_distill.migration.journal -> qdrant_distill.migration.pipeline" in done.stdout
    assert "migration BROKEN" in done.stdout
