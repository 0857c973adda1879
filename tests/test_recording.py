"""A recording never overwrites an input, never fights another onbeat over its files, and is finished whatever
stops the show (Ctrl-C twice, SIGTERM, SIGHUP); names and folders it cannot use are refused before it starts."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile

from onbeat.commands.cli import main
from onbeat.core.errors import OnbeatError
from onbeat.core.motion import Motion
from onbeat.stream.sinks import Recorder

QUIET = ["--silent", "--no-vmc", "--quiet", "--control-port", "0", "--model", "groove"]


def song(path, seconds=3.0, rate=22050):
    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(path, (0.5 * np.sin(2 * np.pi * 220 * t) * (t % 0.5 < 0.05)).astype(np.float32), rate)
    return path


def one_error_line(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("onbeat: error: "), err
    return err[0]


@pytest.mark.parametrize("record", ["song.npz", "song.bvh", "song.NPZ"])
def test_a_recording_beside_the_song_refuses_to_overwrite_it(tmp_path, capsys, record):
    music = song(tmp_path / "song.wav")
    before = music.read_bytes()
    line = one_error_line(["play", str(music), "--record", str(tmp_path / record), *QUIET], capsys)
    assert "would overwrite" in line and "song.wav" in line
    assert music.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["song.wav"]


def test_links_and_part_names_count_as_the_same_file(tmp_path):
    music = song(tmp_path / "song.wav")
    os.link(music, tmp_path / "take.wav")  # another name for the same inode
    with pytest.raises(OnbeatError, match="would overwrite"):
        Recorder(tmp_path / "take.npz", 60, inputs=[music])
    (tmp_path / "sub").mkdir()
    os.symlink(tmp_path / "sub", tmp_path / "link")
    part = Motion(30, np.zeros((2, 3)), np.tile([1.0, 0, 0, 0], (2, 24, 1)))
    part.save(tmp_path / "sub" / "show.part003.npz")
    with pytest.raises(OnbeatError, match="would overwrite .*a part file"):
        Recorder(tmp_path / "link" / "show.npz", 60, inputs=[tmp_path / "sub" / "show.part003.npz"])


def test_replaying_an_earlier_recording_is_not_overwritten(tmp_path, capsys):
    first = tmp_path / "take.npz"
    assert main(["play", "--demo", "--seconds", "1", "--record", str(first), *QUIET]) == 0
    capsys.readouterr()
    audio = (tmp_path / "take.wav").read_bytes()
    line = one_error_line(["play", str(tmp_path / "take.wav"), "--record", str(first), *QUIET], capsys)
    assert "would overwrite" in line and (tmp_path / "take.wav").read_bytes() == audio


def test_a_second_recorder_on_the_same_name_is_refused_until_the_first_is_done(tmp_path):
    first = Recorder(tmp_path / "show.npz", 60)
    for clash in ("show.npz", "show.bvh"):  # a .bvh shares the .wav and the parts
        with pytest.raises(OnbeatError, match=rf"another onbeat \(pid {os.getpid()}\) is recording to it"):
            Recorder(tmp_path / clash, 60)
    first.close()
    assert not (tmp_path / "show.lock").exists()
    Recorder(tmp_path / "show.npz", 60).close()


RECORD = [sys.executable, "-m", "onbeat.commands.cli", "play", "--demo", "--record"]


@pytest.mark.slow
def test_two_instances_with_one_record_path_cannot_spoil_each_other(tmp_path):
    out = tmp_path / "r.npz"
    first = subprocess.Popen([*RECORD, str(out), "--seconds", "60", *QUIET], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for_file(tmp_path / "r.wav", 30)  # the first is recording
        second = subprocess.run([*RECORD, str(out), "--seconds", "2", *QUIET], capture_output=True, text=True,
                                timeout=60)
        assert first.poll() is None, "the first instance ended before the second tried"
        assert second.returncode == 2 and "another onbeat" in second.stderr
        time.sleep(5.5)  # past the first part file, which the second would have deleted
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=60)
    finally:
        first.kill()
    assert first.returncode == 0, err
    assert Motion.load(out).duration > 5.0 and not list(tmp_path.glob("r.part*"))


def wait_for_file(path, seconds):
    end = time.monotonic() + seconds
    while not path.exists() and time.monotonic() < end:
        time.sleep(0.05)
    return path.exists()


@pytest.mark.slow
@pytest.mark.parametrize("signals", [[signal.SIGTERM], [signal.SIGHUP], [signal.SIGINT], [signal.SIGINT] * 2],
                         ids=["SIGTERM", "SIGHUP", "SIGINT", "Ctrl-C twice"])
def test_stop_signals_finish_the_recording(tmp_path, signals):
    out = tmp_path / "r.npz"
    show = subprocess.Popen([*RECORD, str(out), "--seconds", "60", *QUIET], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for_file(tmp_path / "r.wav", 30)
        time.sleep(1.5)
        for signum in signals:
            show.send_signal(signum)
            time.sleep(0.02)
        out_text, err = show.communicate(timeout=60)
    finally:
        show.kill()
    # A second Ctrl-C that comes after everything is written may end the exiting process (status -SIGINT)
    assert show.returncode == 0 or (len(signals) > 1 and show.returncode == -signal.SIGINT), err
    assert "recorded" in err and str(out) in err
    motion = Motion.load(out)
    assert motion.duration > 1.0 and not list(tmp_path.glob("r.part*")) and not (tmp_path / "r.lock").exists()
    assert soundfile.info(tmp_path / "r.wav").duration > 1.0


def test_a_name_too_long_for_the_file_system_is_refused_before_anything_is_written(tmp_path, capsys):
    name = "a" * 248 + ".npz"  # fits, but its part files (a*248.part000.npz) do not
    line = one_error_line(["play", "--demo", "--seconds", "1", "--record", str(tmp_path / name), *QUIET], capsys)
    assert "name too long" in line and "255" in line
    assert list(tmp_path.iterdir()) == []


def test_an_upper_case_extension_writes_the_file_it_names(tmp_path, capsys):
    out = tmp_path / "OUT.NPZ"
    assert main(["play", "--demo", "--seconds", "1", "--record", str(out), *QUIET]) == 0
    assert f"to {out} and" in capsys.readouterr().err
    assert Motion.load(out).num_frames > 0 and not (tmp_path / "OUT.NPZ.npz").exists()


def test_parts_left_by_an_unfinished_recording_are_not_overwritten(tmp_path):
    left = tmp_path / "show.part000.npz"
    Motion(30, np.zeros((2, 3)), np.tile([1.0, 0, 0, 0], (2, 24, 1))).save(left)
    before = left.read_bytes()
    with pytest.raises(OnbeatError, match="left by an earlier recording"):
        Recorder(tmp_path / "show.npz", 60)
    assert left.read_bytes() == before and not (tmp_path / "show.lock").exists()


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder this process cannot write to: a read-only tmpfs when running as root (root ignores modes)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a read-only tmpfs (needs root): {mounted.stderr.strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=True)


def test_a_read_only_folder_is_refused_at_start(read_only_folder, capsys):
    line = one_error_line(["play", "--demo", "--seconds", "1", "--record", str(read_only_folder / "x.npz"),
                           *QUIET], capsys)
    assert "cannot write to" in line and ("Read-only file system" in line or "Permission denied" in line)
