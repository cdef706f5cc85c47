"""The library's layout contracts: layers and forbidden imports (import-linter), light estimators,
small modules, notebooks without logic, one repository root."""

import re
import subprocess
import sys

from pidlib.core.paths import REPO_ROOT

PIDLIB = REPO_ROOT / "pidlib"


def test_import_contracts_hold():
    """`lint-imports` with pyproject.toml's contracts: layers, forbidden imports, no cycles."""
    from importlinter.cli import lint_imports

    assert lint_imports(config_filename=str(REPO_ROOT / "pyproject.toml")) == 0


def test_estimators_do_not_load_transformers_or_altair():
    code = (
        "import sys, pidlib.pid.flow, pidlib.pid.canonical; "
        "print(sorted({'transformers', 'altair'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_no_module_over_400_lines():
    big = {str(p.relative_to(REPO_ROOT)): n for p in PIDLIB.rglob("*.py")
           if (n := len(p.read_text().splitlines())) > 400}  # fmt: skip
    assert not big


def test_notebooks_hold_no_definitions():
    found = [f"{p.name}:{i}" for p in (REPO_ROOT / "notebooks").glob("*.py")
             for i, line in enumerate(p.read_text().splitlines(), 1)
             if re.match(r"(def|class) ", line)]  # fmt: skip
    assert not found


def test_the_repository_root_is_computed_once():
    """Only pidlib.core.paths derives a path from its own file location."""
    hits = [str(p.relative_to(REPO_ROOT)) for p in PIDLIB.rglob("*.py")
            if "__file__" in p.read_text()]  # fmt: skip
    assert hits == ["pidlib/core/paths.py"]
