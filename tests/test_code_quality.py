"""The code's own checks, run with the tests so CI runs them: the layer contracts (import-linter), the linter
(ruff) and the type checker (mypy), each with its settings in pyproject.toml."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# The repository's top-level folders are the subpackages of `onbeat` (pyproject [tool.setuptools.package-dir]).
LAYERS = ("core", "ear", "choreographers", "stream", "commands", "models", "exporters", "evaluation")


def run(tool, *args, cwd=ROOT):
    return subprocess.run([str(BIN / tool), *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_layers_are_kept():
    """No module imports one of a higher layer, and the live path never imports torch (pyproject.toml)."""
    done = run("lint-imports", "--no-cache")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "BROKEN" not in done.stdout and "0 broken" in done.stdout


def test_the_tree_is_ruff_clean():
    done = run("ruff", "check", "--no-cache", ".")
    assert done.returncode == 0 and "All checks passed" in done.stdout, done.stdout[-4000:] + done.stderr[-2000:]


@pytest.mark.slow
def test_the_package_type_checks(tmp_path):
    """mypy on the `onbeat` namespace as installed: the editable install maps the folders through an import hook
    mypy cannot follow, so the check runs on a tree of links `onbeat/<layer>` -> the repository's folders."""
    package = tmp_path / "onbeat"
    package.mkdir()
    for layer in LAYERS:
        (package / layer).symlink_to(ROOT / layer, target_is_directory=True)
    done = run("mypy", "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(tmp_path / "cache"),
               "-p", "onbeat", cwd=tmp_path)
    assert done.returncode == 0 and "Success: no issues found" in done.stdout, done.stdout[-4000:] + done.stderr
    checked = int(done.stdout.split(" in ")[-1].split()[0])  # modules, counting the namespace packages too
    assert checked >= sum(1 for layer in LAYERS for _ in (ROOT / layer).rglob("*.py")), done.stdout
