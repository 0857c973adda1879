import numpy as np
import pytest

from onbeat.commands.cli import main
from onbeat.core import rotations as R
from onbeat.core.bvh import read_bvh, write_bvh
from onbeat.core.errors import OnbeatError
from onbeat.core.importers import load_bvh
from onbeat.core.motion import Motion
from onbeat.core.skeleton import JOINT_NAMES

SMALL_BVH = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT Spine
  {
    OFFSET 0 10 0
    CHANNELS 3 Yrotation Xrotation Zrotation # a comment
    End Site
    {
      OFFSET 0 5 0
    }
  }
  JOINT Leg
  {
    OFFSET 2 0 0
    CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
    End Site
    {
      OFFSET 0 -40 0
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.0333333
1 90 3 0 0 0 0 0 0 2 0 0 0 0 0
1 90 3 0 0 90 90 0 0 2 -1 0 0 0 0
"""


def write(tmp_path, text, name="test.bvh"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_hierarchy_channels_and_values(tmp_path):
    bvh = read_bvh(write(tmp_path, SMALL_BVH))
    assert bvh.names == ["Hips", "Spine", "Leg"]
    assert list(bvh.parents) == [-1, 0, 0]
    assert bvh.channels[1] == ("Yrotation", "Xrotation", "Zrotation")
    assert bvh.fps == 30.0 and bvh.num_frames == 2
    assert set(bvh.end_sites) == {1, 2} and np.allclose(bvh.end_sites[2], [0, -40, 0])
    assert np.allclose(bvh.root_positions, [[1, 90, 3], [1, 90, 3]])
    # The Leg's position channels replace its OFFSET in each frame.
    assert np.allclose(bvh.translations[:, 2], [[2, 0, 0], [2, -1, 0]])
    pos = bvh.positions()
    assert np.allclose(pos[0, 1], [1, 100, 3])
    # Frame 1: root turned 90 degrees about y, spine 90 about y then 0: spine still points up.
    assert np.allclose(pos[1, 1], [1, 100, 3])
    assert np.allclose(R.quat_apply(bvh.rotations[1, 0], [1.0, 0, 0]), [0, 0, -1], atol=1e-9)


def test_euler_order_follows_the_channel_list(tmp_path):
    text = SMALL_BVH.replace("1 90 3 0 0 90 90 0 0", "1 90 3 0 0 0 30 40 50")
    bvh = read_bvh(write(tmp_path, text))
    assert np.allclose(bvh.rotations[1, 1], R.quat_from_euler([30, 40, 50], "yxz"))


@pytest.mark.parametrize("change, problem", [
    (lambda t: t[:t.index("MOTION")], "no MOTION section"),
    (lambda t: t[:-30], "values, the hierarchy has 15"),
    (lambda t: t.replace("Frames: 2", "Frames: 3"), "truncated? header says 3 frames, found 2"),
    (lambda t: t.replace("Frames: 2", "Frames: 0"), "no frames"),
    (lambda t: t.replace("0 0 90 90", "0 0 abc 90"), "line 29: 'abc' is not a number"),
    (lambda t: t.replace("0 0 90 90", "0 0 nan 90"), "line 29: NaN"),
    (lambda t: t.replace("OFFSET 2 0 0", "OFFSET 2 x 0"), "line 17: OFFSET needs 3 numbers"),
    (lambda t: t.replace("Xrotation Yrotation\n    End", "Xrotation Wrotation\n    End"),
     "unknown channel 'Wrotation'"),
    (lambda t: t.replace("  }\n}\nMOTION", "  }\nMOTION"), "hierarchy ends early"),
    (lambda t: t.replace("Frame Time: 0.0333333", "Frame Time: 0"), "Frame Time must be positive"),
    (lambda t: "", "no MOTION section"),
])
def test_broken_files_raise_one_clear_error(tmp_path, change, problem):
    path = write(tmp_path, change(SMALL_BVH))
    with pytest.raises(OnbeatError) as error:
        read_bvh(path)
    message = str(error.value)
    assert message.startswith(str(path)) and problem in message and "\n" not in message


def test_missing_file_is_an_onbeat_error(tmp_path):
    with pytest.raises(OnbeatError, match="cannot read BVH file"):
        read_bvh(tmp_path / "absent.bvh")


@pytest.mark.slow
def test_reads_every_real_file(data_dir):
    files = sorted((data_dir / "bvh").glob("*.bvh"))
    assert files
    for path in files:
        bvh = read_bvh(path)
        assert bvh.num_frames > 100 and bvh.fps in (30.0, 40.0)
        assert len(bvh.names) in (22, 23, 54)
        pos = bvh.positions()
        # Dancers stand on the floor (cm, y up): feet near 0, head well above.
        assert np.isfinite(pos).all()
        assert abs(np.percentile(pos[..., 1].min(axis=1), 50)) < 15, path.name
        assert pos[..., 1].max() > 140, path.name


# --- writing -------------------------------------------------------------------------------------------------

def plausible_motion(frames=90, fps=30.0, seed=0):
    """Smooth random joint rotations up to about 90 degrees, a turning, travelling root."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames)[:, None, None] / fps
    amplitude, speed = rng.uniform(0.2, 1.5, (1, 24, 3)), rng.uniform(0.5, 3, (1, 24, 3))
    phase = rng.uniform(0, 6, (1, 24, 3))
    axis_angle = amplitude * np.sin(speed * t + phase)
    axis_angle[:, 0, 1] = np.linspace(0, 4 * np.pi, frames)  # two full turns: Euler angles must wrap cleanly
    axis_angle[frames // 2, 4] = [np.pi / 2, 0, 0]  # gimbal lock of the Z-X-Y order (X = 90 degrees)
    root = np.stack([np.sin(t[:, 0, 0]), 0.9 + 0.05 * np.cos(3 * t[:, 0, 0]), 0.5 * t[:, 0, 0]], axis=1)
    return Motion.from_axis_angle(fps, root, axis_angle)


def fk_error_mm(motion, path):
    """Max and mean distance between the motion's joints and those read back from its BVH."""
    bvh = read_bvh(path)
    by_name = [bvh.names.index(name) for name in JOINT_NAMES]
    error = np.linalg.norm(bvh.positions()[:, by_name] / 100.0 - motion.positions(), axis=-1) * 1000
    return error.max(), error.mean()


def test_written_bvh_reads_back_within_a_millimetre(tmp_path):
    motion = plausible_motion()
    write_bvh(motion, tmp_path / "dance.bvh")
    bvh = read_bvh(tmp_path / "dance.bvh")
    assert bvh.fps == 30.0 and bvh.num_frames == motion.num_frames
    assert sorted(bvh.names) == sorted(JOINT_NAMES) and len(bvh.end_sites) == 5
    worst, mean = fk_error_mm(motion, tmp_path / "dance.bvh")
    assert worst < 1.0, (worst, mean)


def round_trip_error_mm(motion, path):
    """Write, re-import with the importer (identity mapping for SMPL-24 files), compare FK: (max, mean) in mm."""
    write_bvh(motion, path)
    again = load_bvh(path)
    assert again.num_frames == motion.num_frames and again.fps == motion.fps
    error = np.linalg.norm(again.positions() - motion.positions(), axis=-1) * 1000
    return error.max(), error.mean()


def test_round_trip_through_the_importer(tmp_path):
    worst, mean = round_trip_error_mm(plausible_motion(), tmp_path / "dance.bvh")
    assert worst < 1.0, (worst, mean)


@pytest.mark.parametrize("name", ["aachan", "elena", "dataset-1_dance-short_normal_001"])
def test_round_trip_of_real_dances(data_dir, tmp_path, name):
    worst, mean = round_trip_error_mm(load_bvh(data_dir / "bvh" / f"{name}.bvh"), tmp_path / "dance.bvh")
    assert worst < 1.0, (worst, mean)


def test_written_bvh_has_the_layout_blender_reads(tmp_path):
    write_bvh(plausible_motion(frames=3), tmp_path / "dance.bvh")
    lines = (tmp_path / "dance.bvh").read_text().splitlines()
    for i, line in enumerate(lines):
        words = line.split()
        if words[0] in ("ROOT", "JOINT"):  # Blender expects '{', OFFSET, CHANNELS on the next three lines
            assert lines[i + 1].split() == ["{"] and lines[i + 2].split()[0] == "OFFSET"
            assert lines[i + 3].split()[0] == "CHANNELS"
        if words[0] == "End":
            assert words == ["End", "Site"] and lines[i + 2].split()[0] == "OFFSET"
    motion_at = lines.index("MOTION")
    assert lines[motion_at + 1] == "Frames: 3" and lines[motion_at + 2].startswith("Frame Time: ")
    assert all(len(line.split()) == 6 + 23 * 3 for line in lines[motion_at + 3:]) and len(lines) == motion_at + 6


def test_export_bvh_command_resamples(tmp_path):
    plausible_motion(frames=61).save(tmp_path / "dance.npz")
    assert main(["export-bvh", str(tmp_path / "dance.npz"), "-o", str(tmp_path / "out.bvh"), "--fps", "60"]) == 0
    bvh = read_bvh(tmp_path / "out.bvh")
    assert bvh.fps == 60.0 and bvh.num_frames == 121


def test_export_bvh_command_reports_a_bad_input(tmp_path, capsys):
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    assert main(["export-bvh", str(tmp_path / "broken.npz"), "-o", str(tmp_path / "out.bvh")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("onbeat: error:") and "broken.npz" in error and not (tmp_path / "out.bvh").exists()


def test_export_bvh_command_retargets_a_real_file(data_dir, tmp_path):
    assert main(["export-bvh", str(data_dir / "bvh" / "elena.bvh"), "-o", str(tmp_path / "out.bvh")]) == 0
    bvh = read_bvh(tmp_path / "out.bvh")
    assert sorted(bvh.names) == sorted(JOINT_NAMES) and bvh.fps == 30.0 and bvh.num_frames == 668
