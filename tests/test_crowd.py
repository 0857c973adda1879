"""The crowd: many dancers from one engine (`onbeat.choreographers.crowd`, `onbeat.stream.crowd`)."""
import numpy as np
import pytest

from onbeat.choreographers.kinds import installed_models, open_steps
from onbeat.models.badm import BADM
from onbeat.models.codes import Codes

pytest.importorskip("onnxruntime")


def _stack(single_inputs, axes):
    """One batched call's inputs from several single calls' (each input on its batch axis; None: shared)."""
    return [inputs[0] if axis is None else np.concatenate(inputs, axis=axis)
            for inputs, axis in zip(zip(*single_inputs, strict=True), axes, strict=True)]


@pytest.mark.parametrize("kind, model", [("badm", BADM), ("codes", Codes)])
def test_the_shipped_graphs_step_a_batch_as_its_dancers_one_by_one(kind, model):
    _, steps = open_steps(installed_models()[kind], device="cpu")
    for graph, step in steps.items():
        assert step.batched, f"{kind} {graph} has no dynamic batch dimension: re-export it"
        names = [name for name, _ in step.inputs]
        axes = [model.BATCH_AXES.get(name, 0) for name in names]
        singles = [model.parity_inputs(graph, step.metadata, np.random.default_rng(seed)) for seed in range(5)]
        shared = [i for i, axis in enumerate(axes) if axis is None]
        for inputs in singles:  # an input shared by the batch is the same for every dancer
            for i in shared:
                inputs[i][...] = singles[0][i]
        batched = step(*_stack(singles, axes))
        batched = batched if isinstance(batched, tuple) else (batched,)
        for dancer, inputs in enumerate(singles):
            alone = step(*inputs)
            alone = alone if isinstance(alone, tuple) else (alone,)
            for output, (one, many) in enumerate(zip(alone, batched, strict=True)):
                axis = 2 if (graph, output) == ("gpt", 2) else 0  # the cache keeps its batch on axis 2
                np.testing.assert_allclose(np.take(many, [dancer], axis=axis), one, atol=1e-5, rtol=0,
                                           err_msg=f"{kind} {graph} output {output} dancer {dancer}")


@pytest.mark.parametrize("kind", ["badm", "codes"])
def test_the_batched_step_dances_as_each_dancer_alone(kind):
    """One batched call per model step gives every dancer what it would have danced alone (to 1e-5)."""
    from onbeat.choreographers.kinds import kind_named
    from onbeat.core.music import synthetic_music
    _, steps = open_steps(installed_models()[kind], device="cpu")
    metadata = next(iter(steps.values())).metadata
    runtime = kind_named(kind).runtime_factory()
    music = synthetic_music(4.0)
    crowd = [runtime(steps, metadata, seed) for seed in range(4)]
    alone = [runtime(steps, metadata, seed) for seed in range(4)]
    energies = [1.0, 0.5, 1.5, 1.0]
    for k in range(5):
        window = music[8 * k:8 * k + 16]
        key_pose = "arms_up" if k == 3 else None
        together = type(crowd[0]).next_slices(crowd, window, energies, key_pose)
        for dancer, motion, energy in zip(alone, together, energies, strict=True):
            single = dancer.next_slice(window, energy=energy, key_pose=key_pose)
            np.testing.assert_allclose(motion.rotations, single.rotations, atol=1e-5, rtol=0)
            np.testing.assert_allclose(motion.root_translation, single.root_translation, atol=1e-5, rtol=0)
    assert not np.allclose(together[0].rotations, together[1].rotations)  # own seeds: own dances


@pytest.mark.parametrize("shape", ["line", "circle", "grid"])
@pytest.mark.parametrize("count", [1, 2, 3, 7, 8, 32])
def test_formations_keep_their_spacing(shape, count):
    from onbeat.choreographers.crowd import formation, min_distance
    places, facings = formation(shape, count, spacing=1.2)
    assert places.shape == (count, 2) and facings.shape == (count,)
    assert min_distance(places) >= 1.2 - 1e-9
    assert np.allclose(places.mean(axis=0), 0.0, atol=0.6 * 1.2)  # centred (a grid's last row may be short)


def test_a_formation_tighter_than_arms_reach_is_refused():
    from onbeat.choreographers.crowd import MIN_SPACING, formation
    from onbeat.core.errors import OnbeatError
    with pytest.raises(OnbeatError, match="at least"):
        formation("line", 4, spacing=MIN_SPACING / 2)
    with pytest.raises(OnbeatError, match="formation"):
        formation("wedge", 4)


def _groove_crowd(count, mode, **options):
    from onbeat.choreographers.crowd import Crowd, Dancer, formation
    from onbeat.choreographers.groove import GrooveChoreographer
    places, facings = formation("line", count, 2.0)
    dancers = [Dancer(seed=i, place=tuple(p), facing=f) for i, (p, f) in enumerate(zip(places, facings, strict=True))]
    return Crowd(lambda seed, style: GrooveChoreographer(), dancers, mode, **options)


def test_a_canon_dances_the_same_moves_offset_by_beats():
    from onbeat.core.music import synthetic_music
    crowd = _groove_crowd(3, "canon", offset_beats=1.0, bpm=120.0)  # one beat = 15 frames at 30 fps
    music = synthetic_music(10.0)
    slices = [crowd.next_slice(music[8 * k:8 * k + 16]) for k in range(20)]
    rotations = [np.concatenate([s[i].rotations for s in slices]) for i in range(3)]
    np.testing.assert_allclose(rotations[1][15:], rotations[0][:-15], atol=1e-9)
    np.testing.assert_allclose(rotations[2][30:], rotations[0][:-30], atol=1e-9)
    roots = [np.concatenate([s[i].root_translation for s in slices]) for i in range(3)]
    assert np.all(np.abs(roots[1][:, 0] - roots[0][:, 0] - 2.0) < 0.5)  # each at its own place, 2 m apart


def test_dancers_keep_to_their_places():
    from onbeat.choreographers.crowd import formation, min_distance
    from onbeat.core.music import synthetic_music
    crowd = _groove_crowd(4, "unison")
    music = synthetic_music(30.0)
    slices = [crowd.next_slice(music[8 * k:8 * k + 16]) for k in range(100)]
    feet_apart = min(min_distance(np.array([m.root_translation[-1, [0, 2]] for m in s])) for s in slices)
    assert feet_apart > 2.0 - 0.5  # the tether keeps the travel within a step of the place
    assert formation("line", 4, 2.0)[0].shape == (4, 2)


def test_each_dancers_vmc_target_receives_its_own_dancers_frames():
    """A crowd on loopback: every dancer's VMC port gets that dancer's frames (its place on the floor), and the
    OSC sink of dancer i tags its messages with i."""
    import socket

    from pythonosc.osc_packet import OscPacket

    from onbeat.ear.sources import SyntheticSource
    from onbeat.stream.crowd import CrowdEngine, CrowdMaker
    from onbeat.stream.sinks import OnbeatOscSink, VmcSink
    count = 3
    listeners = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count + 1)]
    for sock in listeners:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(2.0)
    osc = listeners[-1]
    crowd = _groove_crowd(count, "free")
    dancer_sinks = [[VmcSink(*sock.getsockname()), OnbeatOscSink(*osc.getsockname(), dancer=i)]
                    for i, sock in enumerate(listeners[:count])]
    engine = CrowdEngine(SyntheticSource(bpm=120.0), CrowdMaker({"groove": crowd}), dancer_sinks, real_time=False)
    engine.simulate(1.0)
    for sinks in dancer_sinks:
        for sink in sinks:
            sink.close()
    for i, sock in enumerate(listeners[:count]):
        roots = []
        while len(roots) < 20:  # a frame's bundles: the first carries the root
            roots += [m.message.params[1] for m in OscPacket(sock.recv(65536)).messages
                      if m.message.address == "/VMC/Ext/Root/Pos"]  # Unity x = -onbeat x
        assert np.all(np.abs(-np.array(roots) - crowd.dancers[i].place[0]) < 0.5), f"dancer {i}"
    tags = set()
    for _ in range(30):
        for message in OscPacket(osc.recv(65536)).messages:
            if message.message.address == "/onbeat/frame":
                tags.add(message.message.params[2])
    assert tags == {0, 1, 2}
    for sock in listeners:
        sock.close()


def test_dancer_ports_skip_the_control_and_stage_ports():
    from onbeat.core.errors import OnbeatError
    from onbeat.stream.crowd import dancer_ports
    assert dancer_ports(39539, 1, 4, avoid=[39540, 39542]) == [39539, 39541, 39543, 39544]
    with pytest.raises(OnbeatError, match="65535"):
        dancer_ports(65530, 2, 8)


@pytest.mark.parametrize("argv, problem", [
    (["--dancers", "0"], "--dancers 0: choose 1..256"),
    (["--dancers", "100000"], "--dancers 100000: choose 1..256"),
    (["--dancers", "4", "--spacing", "0.2"], "spacing 0.2 m"),
    (["--dancers", "4", "--energies", "1,3"], "dancer energy 3"),
    (["--dancers", "4", "--vmc", "127.0.0.1:65534", "--vmc-step", "3"], "run past port 65535"),
])
def test_bad_crowds_are_one_line_errors(argv, problem, capsys):
    from onbeat.commands.cli import main
    code = main(["play", "--demo", "--silent", "--no-stage", "--quiet", "--control-port", "0", "--seconds", "1",
                 "--model", "groove", *argv])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"onbeat: error: {err[0].split('error: ')[1]}"] and problem in err[0]
