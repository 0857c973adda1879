import re
import subprocess
import sys

import pytest

from onbeat.commands.cli import main


def report(capsys):
    """The printed rows as {label: value}; labels are left-aligned and followed by at least two spaces."""
    assert main(["info"]) == 0
    return dict(re.match(r"(\S.*?)\s{2,}(.*)", line).groups() for line in capsys.readouterr().out.splitlines()
                if not line.startswith(" "))


def test_info_lists_versions_providers_and_locations(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr("onbeat.core.paths.ASSETS", tmp_path)
    monkeypatch.setenv("ONBEAT_HOME", str(tmp_path / "home"))  # no database the user built here
    out = report(capsys)
    assert out["onbeat"][0].isdigit() and out["python"].startswith(sys.version.split()[0])
    assert out["numpy"] == __import__("numpy").__version__
    assert "CPUExecutionProvider" in out["onnx providers"]
    assert "no shipped model found" in out["models"] and out["audio devices"]
    assert out["programs"].startswith("ffmpeg: ")
    for graph in ("gpt", "decoder"):
        (tmp_path / f"codes.{graph}.onnx").write_bytes(b"")  # empty files
    files = f"{tmp_path / 'codes.gpt.onnx'}, {tmp_path / 'codes.decoder.onnx'}"
    assert report(capsys)["models"] == f"codes (default): {files} (unreadable)"


def test_info_says_where_data_is_missing(capsys, monkeypatch):
    monkeypatch.setattr("onbeat.core.paths.data_root", lambda: None)
    assert report(capsys)["data"] == "not found (set ONBEAT_DATA)"


class NoPortAudio:
    """Import hook that fails like sounddevice does on a machine without the PortAudio library."""

    def find_spec(self, name, path=None, target=None):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")


def test_info_explains_missing_portaudio(capsys, monkeypatch):
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [NoPortAudio()] + sys.meta_path)
    assert main(["info"]) == 0
    assert "PortAudio library not found: install libportaudio2" in capsys.readouterr().out


WITHOUT_TRAIN_EXTRA = """
import sys
class NoTrainExtra:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "onnx", "onnxscript", "pandas", "mir_eval"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoTrainExtra())
from onbeat.commands.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("argv, module", [
    (["train", "badm"], "torch"), (["export", "badm", "-o", "x.onnx"], "torch"), (["bench", "model"], "torch"),
    (["eval", "dance", "--path", "torch", "--data", "."], "torch"), (["eval", "beats"], "mir_eval"),
    (["dataset", "build", "-o", "d.npz"], "pandas")])
def test_a_command_whose_extra_is_missing_names_the_extra_in_one_line(argv, module, tmp_path):
    """As a user with only the `cpu` extra sees it (the commands .ci/newcomer runs): the train extra's modules
    cannot be imported, and the command names the first one it needs before doing any work."""
    done = subprocess.run([sys.executable, "-c", WITHOUT_TRAIN_EXTRA, *argv], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    words = " ".join(argv[:2] if argv[0] in ("bench", "eval", "dataset") else argv[:1])
    assert done.returncode == 2 and done.stderr.splitlines() == [
        f"onbeat: error: `onbeat {words}` needs {module}: install the train extra (pip install 'onbeat[train]')"]


def test_eval_dance_on_the_live_path_needs_no_train_extra(tmp_path):
    """The live path is onbeat play's pipeline: without the train extra it runs (here: it only asks for data)."""
    done = subprocess.run([sys.executable, "-c", WITHOUT_TRAIN_EXTRA, "eval", "dance", "--data", str(tmp_path / "no"),
                           "--models", "groove"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 2 and "train extra" not in done.stderr and "Traceback" not in done.stderr, done.stderr
