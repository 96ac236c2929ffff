"""The shape of the library: the layer contract (import-linter), no hidden imports inside functions."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")
# Imports inside functions: only optional or heavy dependencies, each with a comment saying why.
LOCAL_IMPORT = re.compile(r"^\s+(?:from\s+\S+\s+import\s|import\s)")


def _lint(root: Path) -> subprocess.CompletedProcess:
    if not LINT.is_file():
        pytest.skip(f"lint-imports is not installed beside {sys.executable} (pip install import-linter)")
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_layer_contract_is_kept():
    r = _lint(ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "1 kept, 0 broken" in r.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    shutil.copytree(ROOT / "relik_jax", tmp_path / "relik_jax", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    types = tmp_path / "relik_jax" / "core" / "types.py"
    types.write_text(types.read_text() + "\nfrom relik_jax.training import loop  # an upward import\n")
    r = _lint(tmp_path)
    assert r.returncode != 0 and "BROKEN" in r.stdout
    assert "relik_jax.core.types -> relik_jax.training.loop" in r.stdout


def test_imports_inside_functions_are_only_documented_optional_ones():
    found = []
    for path in sorted((ROOT / "relik_jax").rglob("*.py")):
        lines = path.read_text().splitlines()
        in_doc = False
        for n, line in enumerate(lines, 1):
            if line.count('"""') % 2:
                in_doc = not in_doc
            if in_doc or not LOCAL_IMPORT.match(line):
                continue
            found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    library = [f for f in found if re.search(r":\s*(from|import) relik_jax", f)]
    assert not library, "imports of relik_jax inside functions:\n" + "\n".join(library)
    undocumented = [f for f in found if "#" not in f]
    assert not undocumented, "imports inside functions without a comment saying why:\n" + "\n".join(undocumented)
