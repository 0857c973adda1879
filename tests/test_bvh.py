import numpy as np
import pytest

from onbeat.models import rotations as R
from onbeat.models.bvh import read_bvh
from onbeat.models.errors import OnbeatError

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
    (lambda t: t.replace("Xrotation Yrotation\n    End", "Xrotation Wrotation\n    End"), "unknown channel 'Wrotation'"),
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
