"""The house plan (pyproject.toml, ``[tool.importlinter]``) holds: no module imports a layer above it, function-local
imports included, and every module of the package has its place in the plan."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports() -> str:
    found = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if found is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    return found


def _layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["type"] == "layers"]
    return [name.strip() for layer in contract["layers"] for name in layer.split("|")]


def test_no_module_imports_a_layer_above_it() -> None:
    done = subprocess.run([_lint_imports(), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "1 kept, 0 broken" in done.stdout


def test_every_module_has_a_place_in_the_plan() -> None:
    placed = set(_layers())
    modules = {f"qdrant_distill.{p.stem}" for p in (ROOT / "qdrant_distill").glob("*.py") if p.stem != "__init__"}
    modules |= {f"qdrant_distill.{p.name}" for p in (ROOT / "qdrant_distill").iterdir()
                if p.is_dir() and (p / "__init__.py").is_file()}
    assert modules - placed == set(), "modules missing from [tool.importlinter] layers in pyproject.toml"
    assert "connectors" in placed


def test_an_upward_import_inside_a_function_breaks_the_plan(tmp_path: Path) -> None:
    # fault injection on a copy: a function-local import of the migration from the journal must be caught
    copy = tmp_path / "house"
    shutil.copytree(ROOT / "qdrant_distill", copy / "qdrant_distill", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "connectors", copy / "connectors", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    journal = copy / "qdrant_distill" / "journal.py"
    journal.write_text(journal.read_text(encoding="utf-8") + "\n\ndef _upward() -> None:\n"
                       "    from qdrant_distill.migration import migrate  # noqa: F401\n", encoding="utf-8")
    done = subprocess.run([_lint_imports(), "--no-cache"], cwd=copy, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(copy), "PATH": str(Path(sys.executable).parent)})
    assert done.returncode != 0 and "qdrant_distill.journal -> qdrant_distill.migration" in done.stdout
