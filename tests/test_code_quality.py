"""The code's own checks, run with the tests so CI runs them: the layer contracts (import-linter)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(tool, *args):
    return subprocess.run([str(BIN / tool), *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_layers_are_kept():
    """No module imports one of a higher layer, and the live path never imports torch (pyproject.toml)."""
    done = run("lint-imports", "--no-cache")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "BROKEN" not in done.stdout and "0 broken" in done.stdout
