"""The graph choreographer: its database file, and the live dance it makes from it (novelty, joins, feet, tempo,
key poses, styles, structure). Unit tests use a database of the procedural groove at two energies and tempi (two
styles); the real-data tests build one from the shared data and skip without it."""
import numpy as np
import pytest

from onbeat.choreographers.datafile import DataFile, save_data_file
from onbeat.choreographers.finishing import Finishing
from onbeat.choreographers.graph import NOVELTY_BARS, GraphChoreographer
from onbeat.choreographers.groove import GrooveChoreographer
from onbeat.choreographers.keyposes import REACHED_CM, reach_cm
from onbeat.choreographers.kinds import load_choreographer
from onbeat.choreographers.library import Library
from onbeat.commands.cli import main
from onbeat.core import rotations as R
from onbeat.core.beat_grid import BeatGrid
from onbeat.core.errors import OnbeatError
from onbeat.core.motion import Motion
from onbeat.core.music import BEATS_PER_BAR, FEATURE_NAMES, synthetic_music
from onbeat.core.representation import encode
from onbeat.core.skeleton import FOOT_JOINTS, JOINT_INDEX
from onbeat.models import graph_database
from onbeat.models.dataset import Track

FPS = 30


def groove_track(bpm, seconds, style, energy, seed):
    """A dance of the procedural groove with its music, as the dataset builder makes Tracks."""
    music = synthetic_music(seconds, bpm, seed)
    groove = GrooveChoreographer()
    slices = [groove.next_slice(music[k:k + 8], energy=energy) for k in range(0, len(music) - 7, 8)]
    motion = Motion(FPS, np.concatenate([m.root_translation for m in slices]),
                    np.concatenate([m.rotations for m in slices]))
    return synthetic_track(f"groove_{style}_{energy}", style, encode(motion), music, bpm)


def synthetic_track(name, style, rows, music, bpm):
    """A Track of rows danced to synthetic music (its beats on the grid it was made with, a downbeat first)."""
    count = len(rows)
    beats = BeatGrid.counted(np.arange(0.0, count / FPS, 60.0 / bpm))
    return Track(name, "synthetic", "synthetic", style, name, rows, music[:count], np.ones((count, 2), np.float32),
                 np.full(count, bpm, np.float32), beats, "annotated")


def planted_track(bpm, seconds, knee, width, seed):
    """The groove's upper body over legs that never move, in a stance of its own (knee bend and feet apart, degrees):
    feet planted on one spot for the whole take."""
    music = synthetic_music(seconds, bpm, seed)
    groove = GrooveChoreographer()
    rotations = np.concatenate([groove.next_slice(music[k:k + 8]).rotations for k in range(0, len(music) - 7, 8)])
    rotations[:, 0] = [1.0, 0.0, 0.0, 0.0]

    def turn(x_degrees, z_degrees):
        return R.quat_multiply(R.quat_from_axis_angle(np.radians([x_degrees, 0.0, 0.0])),
                               R.quat_from_axis_angle(np.radians([0.0, 0.0, z_degrees])))

    for side, sign in (("Left", 1.0), ("Right", -1.0)):
        rotations[:, JOINT_INDEX[f"{side}_Hip"]] = turn(-knee / 2, sign * width)
        rotations[:, JOINT_INDEX[f"{side}_Knee"]] = turn(knee, 0.0)
        rotations[:, JOINT_INDEX[f"{side}_Ankle"]] = turn(-knee / 2, -sign * width)
    standing = Motion(FPS, np.zeros((len(rotations), 3)), rotations)
    root = np.zeros((len(rotations), 3))
    root[:, 1] = -standing.lowest_foot_height()
    return synthetic_track(f"planted_{knee}_{width}", "planted", encode(Motion(FPS, root, rotations)), music, bpm)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    tracks = [planted_track(110, 30, 10, 3, 0), planted_track(110, 30, 50, 12, 1), planted_track(110, 30, 30, 0, 2)]
    arrays, metadata = graph_database.build(tracks, contents="test stances")
    return save_data_file(tmp_path_factory.mktemp("graph") / "planted.npz", "graph", "database", metadata, arrays)


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    tracks = [groove_track(100, 40, "slow", 0.5, 0), groove_track(100, 40, "slow", 1.5, 1),
              groove_track(125, 40, "fast", 0.5, 2), groove_track(125, 40, "fast", 1.5, 3)]
    arrays, metadata = graph_database.build(tracks, contents="test grooves")
    return save_data_file(tmp_path_factory.mktemp("graph") / "grooves.npz", "graph", "database", metadata, arrays)


def dance(dancer, music, energy=1.0, finishing=None):
    """Motion of the whole dance from slices of `music`, as the engine feeds them (each slice's rows, then the next
    slice's as lookahead) and, given the engine's `Finishing`, finishes them (key poses, grounded feet)."""
    frames = dancer.slice_frames
    slices = []
    for k in range(0, len(music) - 2 * frames, frames):
        motion = dancer.next_slice(music[k:k + 2 * frames], energy=energy)
        slices.append(motion if finishing is None else finishing(motion, k / FPS))
    return Motion(FPS, np.concatenate([m.root_translation for m in slices]),
                  np.concatenate([m.rotations for m in slices]))


def live_beats_of(music):
    """Output frames of the music's beats (where the beat phase wraps)."""
    sin, cos = (music[:, FEATURE_NAMES.index(f"beat_phase_{c}")] for c in ("sin", "cos"))
    phase = (np.arctan2(sin, cos) / (2 * np.pi)) % 1.0
    return np.flatnonzero(np.diff(phase) < -0.5) + 1


# --- the file ----------------------------------------------------------------------------------------------------
def test_the_database_file_names_its_kind_styles_and_contents_and_loads_by_them(database):
    part = DataFile(database)
    assert (part.kind, part.graph) == ("graph", "database")
    assert part.metadata["styles"] == ["fast", "slow"] and part.metadata["contents"] == "test grooves"
    assert part.arrays["rotations"].dtype == np.float16 and part.arrays["beat_pose"].shape[1] == len(
        part.metadata["pose_features"])
    dancer = load_choreographer(database, seed=0)
    assert isinstance(dancer, GraphChoreographer) and dancer.styles == ["fast", "slow"]
    assert Library(seed=0).load(str(database)).styles == ["fast", "slow"]  # a path, like an .onnx export


def test_foreign_damaged_and_other_format_files_are_one_clear_error(database, tmp_path):
    with pytest.raises(OnbeatError, match=r"missing\.npz: no such model file"):
        load_choreographer(tmp_path / "missing.npz")
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(OnbeatError, match=r"broken\.npz: not a readable onbeat data file"):
        load_choreographer(tmp_path / "broken.npz")
    np.savez(tmp_path / "plain.npz", x=np.zeros(3))
    with pytest.raises(OnbeatError, match=r"plain\.npz: not an onbeat model"):
        load_choreographer(tmp_path / "plain.npz")
    part = DataFile(database)
    save_data_file(tmp_path / "old.npz", "graph", "database", {**part.metadata, "graph_format": 0}, part.arrays)
    with pytest.raises(OnbeatError, match="graph database format 0.*rebuild it with `onbeat graph build`"):
        load_choreographer(tmp_path / "old.npz")
    beyond = {**part.arrays, "beat_frame": part.arrays["beat_frame"] + len(part.arrays["rotations"])}
    save_data_file(tmp_path / "beyond.npz", "graph", "database", part.metadata, beyond)
    with pytest.raises(OnbeatError, match=r"beyond\.npz: damaged graph database \(beats outside their sequences\)"):
        load_choreographer(tmp_path / "beyond.npz")


def test_a_steady_grid_fills_in_dropped_beats_and_keeps_the_bar():
    frames = 9.0 + 18.0 * np.arange(33)  # 100 BPM at 30 fps
    in_bar = np.arange(33) % BEATS_PER_BAR
    kept = np.delete(np.arange(len(frames)), [3, 7, 8, 15])  # a tracker that missed some and jittered the rest
    noisy = frames[kept] + np.random.default_rng(0).normal(0, 0.5, len(kept))
    grid, grid_bars = graph_database.steady_grid(noisy, in_bar[kept], FPS)
    assert len(grid) == len(frames) and np.abs(grid - frames).max() < 0.6
    assert np.array_equal(grid_bars, in_bar)
    octaves = np.sort(np.concatenate([frames, frames[10:20] + 9.0]))  # a stretch tracked at double time
    grid, _ = graph_database.steady_grid(octaves, np.arange(len(octaves)) % BEATS_PER_BAR, FPS)
    assert np.allclose(np.diff(grid), 18.0, atol=0.1)


# --- the dance ---------------------------------------------------------------------------------------------------
def test_a_seed_repeats_its_dance_and_another_seed_dances_another(database):
    music = synthetic_music(20.0, bpm=112.0)
    first = dance(load_choreographer(database, seed=1), music)
    again = dance(load_choreographer(database, seed=1), music)
    other = dance(load_choreographer(database, seed=2), music)
    assert np.array_equal(first.rotations, again.rotations) and np.array_equal(first.root_translation,
                                                                               again.root_translation)
    assert not np.allclose(first.rotations, other.rotations, atol=1e-3)
    dancer = load_choreographer(database, seed=1)
    dance(dancer, music[:300])
    dancer.reset()
    assert np.array_equal(dance(dancer, music).rotations, first.rotations)  # reset: the seed's dance from its start


def test_no_source_beat_is_danced_again_within_eight_bars(database):
    dancer = load_choreographer(database, seed=0)
    dance(dancer, synthetic_music(90.0, bpm=118.0))
    played: dict[int, list[float]] = {}
    db = dancer.database
    for start, candidate in dancer.history:
        for k in range(db.source_beats[candidate]):
            played.setdefault(int(db.beat[candidate]) + k, []).append(start)
    gaps = [b - a for starts in played.values() for a, b in zip(starts[:-1], starts[1:], strict=True)]
    assert len(dancer.history) > 150 and gaps  # the database is small: beats do come back, but not soon
    assert min(gaps) >= NOVELTY_BARS * BEATS_PER_BAR


def test_segments_follow_the_live_beat_whatever_the_source_tempo(database):
    """The grooves bend their knees most on each beat of their own music (100 and 125 BPM); warped onto music at
    112 BPM (and 140, in half time or not), the knees bend most on its beats."""
    for bpm in (112.0, 140.0):
        music = synthetic_music(30.0, bpm=bpm)
        motion = dance(load_choreographer(database, seed=0), music)
        knee = R.quat_to_axis_angle(motion.rotations[:, JOINT_INDEX["Left_Knee"]])[:, 0]
        deepest = [int(np.argmax(knee[b - 4:b + 5])) - 4 for b in live_beats_of(music)[4:] if b + 5 < len(knee)]
        assert np.median(np.abs(deepest)) <= 1, bpm


def test_joins_are_continuous(database):
    dancer = load_choreographer(database, seed=3)
    positions = dance(dancer, synthetic_music(120.0, bpm=110.0)).positions()
    step = np.linalg.norm(np.diff(positions, axis=0), axis=-1).max(axis=1)  # fastest joint, per frame
    join_frames = np.array([int(np.ceil(j["frame"])) for j in dancer.joins if 0 < j["frame"] < len(step)])
    assert len(join_frames) >= 3 and max(j["rotation_degrees"] for j in dancer.joins) > 10  # real jumps
    assert step[join_frames].max() < 1.5 * np.percentile(step, 99)  # no jump at a join


def test_feet_planted_across_a_join_stay_on_their_spot(planted):
    """Three takes, each standing still on its own stance (feet closer or wider, knees straighter or bent): jumps
    between them, placed on the planted feet and finished as the engine does (the sources' contacts pin the feet),
    move no foot."""
    dancer = load_choreographer(planted, seed=0)
    motion = dance(dancer, synthetic_music(60.0, bpm=110.0), finishing=Finishing())
    assert max(j["feet_metres"] for j in dancer.joins) > 0.03  # the stances differ by centimetres
    ankles = motion.positions()[:, [FOOT_JOINTS[0], FOOT_JOINTS[1]]][..., [0, 2]]  # on the ground plane
    assert np.linalg.norm(np.diff(ankles, axis=0), axis=-1).max() * FPS < 0.02  # m/s
    assert motion.lowest_foot_height().min() > -0.01  # and no foot below the floor


def test_the_engines_finishing_lands_a_key_pose_on_a_graph_dance(database):
    music = synthetic_music(12.0, bpm=120.0)
    hit = 6.0  # a downbeat: 120 BPM, bars of 2 s from 0
    finishing = Finishing()
    finishing.strike("arms_up", hit)
    motion = dance(load_choreographer(database, seed=0), music, finishing=finishing)
    assert reach_cm(motion.rotations[int(round(hit * FPS))], "arms_up") < REACHED_CM
    assert reach_cm(motion.rotations[int(round((hit + 2.0) * FPS))], "arms_up") > 3 * REACHED_CM  # and let go


def test_the_style_asked_for_is_danced_in_any_spelling_and_an_unknown_one_is_named(database):
    dancer = load_choreographer(database, seed=0)
    dancer.set_style("FAST")
    dance(dancer, synthetic_music(20.0, bpm=100.0))  # slow's tempo: fast is warped (or danced in half time)
    assert dancer.style == "fast" and {dancer.database.style[c] for _, c in dancer.history} == {0}
    with pytest.raises(OnbeatError, match="style 'salsa': this graph database knows fast, slow"):
        dancer.set_style("salsa")


def test_a_one_sided_style_is_not_danced_mirrored(tmp_path):
    """A style whose dancers favour one side (here: the left arm always held high) keeps its side; a symmetric one
    is danced as recorded and mirrored."""
    one_sided = groove_track(110, 30, "hold", 1.0, 0)
    six_d = one_sided.rows[:, 3:147].reshape(len(one_sided.rows), 24, 6)
    six_d[:, JOINT_INDEX["Left_Shoulder"]] = R.quat_to_6d(R.quat_from_axis_angle(np.radians([0.0, 0.0, 60.0])))
    arrays, metadata = graph_database.build([one_sided, groove_track(110, 30, "free", 1.0, 1)])
    path = save_data_file(tmp_path / "sides.npz", "graph", "database", metadata, arrays)
    db = load_choreographer(path).database
    assert list(db.handed) == [False, True]  # free, hold
    mirrored = {db.style_names[style] for style in db.style[db.mirror == 1]}
    assert mirrored == {"free"}


def test_energy_sizes_the_upper_body(database):
    music = synthetic_music(20.0, bpm=110.0)
    spread = {}
    for energy in (0.2, 1.8):
        rotations = dance(load_choreographer(database, seed=0), music, energy=energy).rotations
        arms = R.quat_to_axis_angle(rotations[150:, JOINT_INDEX["Left_Shoulder"]])
        spread[energy] = np.linalg.norm(arms - arms.mean(axis=0), axis=-1).mean()
    assert spread[1.8] > 1.5 * spread[0.2]


def sectioned_music(bars_per_section=8, sections="ABAB", bpm=120.0):
    """Synthetic music whose chroma and timbre change section by section (A: C major, B: F# minor, louder highs)."""
    frames_per_bar = int(round(BEATS_PER_BAR * 60.0 / bpm * FPS))
    music = synthetic_music(len(sections) * bars_per_section * frames_per_bar / FPS + 2, bpm, seed=4)
    chroma = [FEATURE_NAMES.index(f"chroma_{i}") for i in range(12)]
    mel = [FEATURE_NAMES.index(f"mel_{i}") for i in range(8)]
    for index, name in enumerate(sections):
        rows = slice(index * bars_per_section * frames_per_bar, (index + 1) * bars_per_section * frames_per_bar)
        notes = (0, 4, 7) if name == "A" else (6, 9, 1)
        music[rows][:, chroma] = 0.05
        music[rows][:, [chroma[n] for n in notes]] = 1.0
        music[rows][:, mel] = np.linspace(0.9, 0.3, 8) if name == "A" else np.linspace(0.4, 0.9, 8)
    return music


def test_a_section_that_comes_back_brings_back_its_phrase(database):
    dancer = load_choreographer(database, seed=0)
    dance(dancer, sectioned_music())
    db = dancer.database
    recalled = [dancer.bar_segments[bar] for bar in range(17, 21)]  # the second A's first bars
    first = [dancer.bar_segments[bar] for bar in range(1, 5)]
    same = [db.beat[a] == db.beat[b] for x, y in zip(first, recalled, strict=True) for a, b in zip(x, y, strict=False)]
    assert np.mean(same) > 0.8, (first, recalled)  # the phrase again (mirrored or not)
    b_section = [db.beat[c] for bar in dancer.bar_segments[9:13] for c in bar]
    assert not set(b_section) & {db.beat[c] for bar in first for c in bar}  # the B section danced other beats


# --- by name, through the commands ------------------------------------------------------------------------------
def test_graph_by_name_is_the_shipped_database_until_the_user_builds_one(database, tmp_path, monkeypatch):
    monkeypatch.setenv("ONBEAT_HOME", str(tmp_path))
    shipped = Library(seed=0)
    assert "graph" in shipped.names()
    assert shipped.load("graph").metadata["contents"].startswith("Dances made by onbeat's own shipped models")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "graph.npz").write_bytes(database.read_bytes())
    assert Library(seed=0).load("graph").styles == ["fast", "slow"]  # the one built here comes first


def test_play_dances_the_style_asked_for_and_names_a_wrong_one(database, tmp_path, capsys):
    recording = tmp_path / "dance.npz"
    common = ["play", "--demo", "--silent", "--seconds", "4", "--no-vmc", "--control-port", "0", "--quiet"]
    assert main([*common, "--model", str(database), "--style", "slow", "--record", str(recording)]) == 0
    dance_ = Motion.load(recording)
    assert dance_.num_frames >= 200 and np.ptp(dance_.rotations[90:], axis=0).max() > 1e-2
    assert main([*common, "--model", str(database), "--style", "salsa"]) == 2
    assert "style 'salsa': this graph database knows fast, slow" in capsys.readouterr().err
    assert main([*common, "--model", "groove", "--style", "slow"]) == 2
    assert "--style slow (model groove): this model knows no styles" in capsys.readouterr().err


@pytest.mark.slow
def test_the_shippable_database_is_built_from_the_shipped_models_alone(tmp_path):
    output = tmp_path / "graph.npz"
    assert main(["graph", "build", "--generated", "--seconds", "6", "-o", str(output)]) == 0
    part = DataFile(output)
    assert set(part.arrays["sequence_source"]) == {"generated"} and part.metadata["styles"] == ["freestyle"]
    assert "no recorded motion" in part.metadata["contents"]
    assert len(part.arrays["sequence_name"]) == 12  # two models at six tempi
    assert dance(load_choreographer(output, seed=0), synthetic_music(8.0)).num_frames > 200


@pytest.mark.slow
def test_a_database_of_the_street_dances_dances_hip_hop_to_a_song(data_dir, tmp_path):
    """The real data: Motorica's street dances, built by the command, danced to a song of the shared data with
    --style hip-hop, every segment hip-hop, none repeated within eight bars."""
    output = tmp_path / "street.npz"
    assert main(["graph", "build", "--data", str(data_dir), "--sources", "motorica", "-o", str(output)]) == 0
    part = DataFile(output)
    assert {"krump", "locking", "popping"} <= {s.replace("hiphop", "hip-hop") for s in part.metadata["styles"]}
    assert "academic research only" in part.metadata["contents"]
    song = data_dir / "music-cc" / "Kevin_MacLeod_-_Vibe_Ace.ogg"  # a hip-hop beat, CC BY
    recording = tmp_path / "dance.npz"
    assert main(["play", str(song), "--silent", "--seconds", "12", "--model", str(output), "--style", "hip-hop",
                 "--no-vmc", "--control-port", "0", "--quiet", "--record", str(recording)]) == 0
    motion = Motion.load(recording)
    assert motion.num_frames > 500 and motion.lowest_foot_height().min() > -0.05
    dancer = load_choreographer(output, seed=0)
    dancer.set_style("hip-hop")
    dance(dancer, synthetic_music(60.0, bpm=95.0))
    styles = {dancer.database.style_names[dancer.database.style[c]] for _, c in dancer.history}
    assert styles == {dancer.style} and dancer.style in ("hip-hop", "hiphop")
