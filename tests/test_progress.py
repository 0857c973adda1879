"""Progress bars (`onbeat.core.progress`): drawn on a terminal, absent in logs, pipes and with `--quiet`; the
trainer's bar is the same rich bar with the losses beside it."""
import os
import pty
import subprocess
import sys

import pytest

from onbeat.commands.cli import build_parser
from onbeat.core.progress import tracked


def on_a_terminal(code):
    """Run `code` in a fresh Python whose stderr is a pseudo-terminal; (stdout, what the terminal showed)."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=terminal, text=True,
                               env={**os.environ, "COLUMNS": "160", "TERM": "xterm"})
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    out, _ = process.communicate(timeout=60)
    os.close(controller)
    assert process.returncode == 0, shown.decode(errors="replace")
    return out, shown.decode(errors="replace")


def test_tracked_draws_a_bar_on_a_terminal_and_nothing_when_quiet():
    out, shown = on_a_terminal("from onbeat.core.progress import tracked\n"
                               "print(sum(tracked(range(5), what='counting sheep')))")
    assert out.strip() == "10" and "counting sheep" in shown and "5/5" in shown
    out, shown = on_a_terminal("from onbeat.core.progress import tracked\n"
                               "print(sum(tracked(range(5), what='counting sheep', quiet=True)))")
    assert out.strip() == "10" and shown == ""


def test_tracked_off_a_terminal_only_yields(capsys):
    assert list(tracked(iter("abc"), what="letters")) == ["a", "b", "c"]
    assert capsys.readouterr() == ("", "")


def test_training_progress_is_a_rich_bar_with_the_losses_on_a_terminal():
    pytest.importorskip("torch")
    code = ("from onbeat.models.train import Progress\n"
            "p = Progress(10, 0, enabled=True)\n"
            "for step in range(1, 11): p.update(step, 0.5 / step, {'vel': 0.25})\n"
            "p.message('checkpoint saved')\n"
            "p.close()\n")
    out, shown = on_a_terminal(code)
    assert "train" in shown and "10/10" in shown and "loss 0.0500 vel 0.250" in shown
    assert "checkpoint saved" in out + shown


def test_training_progress_off_a_terminal_is_plain_lines(capsys):
    train = pytest.importorskip("onbeat.models.train")
    progress = train.Progress(200, 0, enabled=True)
    for step in range(1, 5):
        progress.update(step, 1.0, {"vel": 0.5})
    progress.message("saved")
    progress.close()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("step 2/200: loss 1.0000 vel 0.500") and lines[-1] == "saved"


@pytest.mark.parametrize("argv", [["eval", "dance", "--data", "x"], ["eval", "beats"], ["dataset", "build", "-o", "x"]])
def test_the_long_commands_take_quiet(argv):
    assert build_parser(argv).parse_args([*argv, "--quiet"]).quiet is True
