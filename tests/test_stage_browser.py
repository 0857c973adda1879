"""The browser stage in a real browser: Debian's chromium (headless, WebGL 2 in software through SwiftShader),
driven by Playwright, against a live engine on the synthetic drum track.

Skipped with the reason when chromium (`apt-get install chromium`) or Playwright (the dev extra) is missing.
Playwright never downloads a browser of its own here: it launches the system one."""
import io
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from onbeat.choreographers.groove import GrooveChoreographer
from onbeat.choreographers.keyposes import KEY_POSES
from onbeat.core import rotations as R
from onbeat.core.motion import Motion
from onbeat.core.music import FEATURE_FPS
from onbeat.core.skeleton import FOOT_JOINTS, JOINT_INDEX, NUM_JOINTS, rest_positions
from onbeat.ear.sources import SyntheticSource
from onbeat.stream.control import Controls
from onbeat.stream.engine import Engine
from onbeat.stream.sinks import VmcSink
from onbeat.stream.stage import WEB_ROOT, Stage

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--no-sandbox",
         "--disable-background-networking", "--disable-component-update", "--no-first-run"]
SHIPPED_AVATAR = WEB_ROOT / "avatars" / "cryptovoxels.vrm"
pytestmark = pytest.mark.slow  # a browser drawing in software: seconds a test


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no {CHROMIUM}: install Debian's chromium (apt-get install chromium) for the browser tests")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


class LiveShow:
    """An engine on the synthetic drum track sending to a stage (and any other sinks), on its own thread."""

    def __init__(self, avatar=None, choreographer=None, sinks=()):
        choreographer = choreographer or GrooveChoreographer()
        self.controls = Controls(model="dance")
        self.stage = Stage(self.controls, port=0, avatar=avatar, key_poses=tuple(KEY_POSES))
        self.engine = Engine(SyntheticSource(bpm=120), {"dance": choreographer}, [self.stage, *sinks],
                             controls=self.controls, idle=choreographer)
        self.stage.attach(self.engine)
        self._thread = threading.Thread(target=self.engine.run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.engine.stop()
        self._thread.join(timeout=10)
        self.stage.close()


class Page:
    """A browser tab on the stage; `errors` collects console errors and uncaught exceptions."""

    def __init__(self, browser, url, size=(640, 400), wait_for_frames=True):
        self.errors = []
        self.page = browser.new_page(viewport={"width": size[0], "height": size[1]})
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(url)
        ready = "onbeatStage.ready()" if wait_for_frames else "!onbeatStage.status.loading"
        self.page.wait_for_function(f"window.onbeatStage && {ready}", timeout=60_000)

    def js(self, expression):
        return self.page.evaluate(expression)

    def pixels(self):
        """The middle third of the page (where the dancer is, away from the HUD) as an (h, w, 3) array."""
        from PIL import Image
        width, height = self.page.viewport_size["width"], self.page.viewport_size["height"]
        shot = self.page.screenshot(clip={"x": width / 3, "y": 0, "width": width / 3, "height": height})
        return np.asarray(Image.open(io.BytesIO(shot)).convert("RGB"), dtype=np.int16)

    def close(self):
        self.page.close()


def angle_degrees(q1, q2):
    """Angle between two (x, y, z, w) rotations."""
    return np.degrees(2 * np.arccos(min(1.0, abs(float(np.dot(q1, q2))))))


@pytest.mark.parametrize("avatar", [None, "mannequin", str(SHIPPED_AVATAR)],
                         ids=["shipped-vrm-without-upperchest", "mannequin", "users-own-vrm"])
def test_the_avatar_dances_on_the_floor(browser, avatar):
    with LiveShow(avatar) as show:
        page = Page(browser, show.stage.url + "?camera=front")
        status = page.js("onbeatStage.status")
        assert status["avatarError"] is None
        assert status["avatar"] == {None: "cryptovoxels.vrm", "mannequin": "mannequin"}.get(avatar, "avatar.vrm")
        # the HUD says which clock leads: the ear here (no Link, MIDI or OSC clock)
        page.page.wait_for_function("document.getElementById('clock-source').textContent === 'ear'", timeout=5000)
        before, pixels_before = page.js("onbeatStage.bones()"), page.pixels()
        time.sleep(0.5)
        after, pixels_after = page.js("onbeatStage.bones()"), page.pixels()
        turned = max(angle_degrees(before[b], after[b]) for b in before)
        changed = np.mean(np.abs(pixels_after - pixels_before).max(axis=-1) > 24)
        print(f"{status['avatar']}: largest bone turn in 0.5 s {turned:.1f} deg, pixels changed {100 * changed:.1f} %")
        assert turned > 3.0 and changed > 0.005
        if avatar != "mannequin":  # the shipped VRM has no UpperChest: its turn is folded into Chest
            assert "upperChest" not in before and "chest" in before
        lowest = []
        for _ in range(8):  # the groove keeps a foot on the floor all the time
            lowest.append(page.js("onbeatStage.lowestPoint()"))
            time.sleep(0.25)
        print(f"lowest point of the avatar (m): {np.round(lowest, 4).tolist()}")
        assert np.all(np.abs(lowest) <= 0.03)
        assert page.errors == []
        page.close()


def test_overlay_is_transparent_and_shows_no_hud(browser):
    from PIL import Image
    with LiveShow("mannequin") as show:
        page = Page(browser, show.stage.url + "?overlay=1")
        assert page.js("getComputedStyle(document.getElementById('hud')).display") == "none"
        assert page.js("getComputedStyle(document.getElementById('controls')).display") == "none"
        shot = np.asarray(Image.open(io.BytesIO(page.page.screenshot(omit_background=True))).convert("RGBA"))
        assert shot[5, 5, 3] == 0 and shot[-5, -5, 3] == 0  # see-through corners for OBS
        assert (shot[..., 3] == 255).mean() > 0.01  # the dancer is drawn
        assert page.errors == []
        page.close()


def test_a_dropped_vrm_file_becomes_the_dancer(browser):
    with LiveShow("mannequin") as show:
        page = Page(browser, show.stage.url)
        page.js("""async () => {
            const bytes = await (await fetch('avatars/cryptovoxels.vrm')).arrayBuffer();
            const data = new DataTransfer();
            data.items.add(new File([bytes], 'mine.vrm'));
            window.dispatchEvent(new DragEvent('drop', {dataTransfer: data, cancelable: true}));
        }""")
        page.page.wait_for_function("onbeatStage.status.avatar === 'mine.vrm' && !onbeatStage.status.loading",
                                    timeout=30_000)
        assert "leftUpperArm" in page.js("onbeatStage.bones()")
        assert page.errors == []
        page.close()


class ArmUp:
    """A choreographer holding one pose: the left arm raised, the right one down at rest."""
    slice_frames, fps = 15, FEATURE_FPS

    def next_slice(self, music, energy=1.0, key_pose=None):
        rotations = np.tile([1.0, 0.0, 0.0, 0.0], (self.slice_frames, NUM_JOINTS, 1))
        rotations[:, JOINT_INDEX["Left_Shoulder"]] = R.quat_from_axis_angle(np.radians(60.0) * np.array([0, 0, 1.0]))
        root = np.tile([0.0, -rest_positions()[list(FOOT_JOINTS), 1].min(), 0.0], (self.slice_frames, 1))
        return Motion(self.fps, root, rotations)

    def reset(self):
        pass

    def set_quality(self, level):
        pass


class VmcListener:
    """The latest rotation of each VMC bone, from a UDP socket on loopback."""

    def __init__(self):
        from pythonosc.osc_packet import OscPacket
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.bones, self.running = {}, True
        self._parse = OscPacket
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self):
        while self.running:
            try:
                data = self.sock.recv(65536)
            except OSError:
                continue
            for timed in self._parse(data).messages:
                if timed.message.address == "/VMC/Ext/Bone/Pos":
                    name, *values = timed.message.params
                    self.bones[name] = np.array(values[3:])  # qx qy qz qw

    def close(self):
        self.running = False
        self._thread.join()
        self.sock.close()


def arms(listener):
    """How far (degrees, rounded) the left and the right upper arm are turned from rest in the VMC stream."""
    return tuple(round(angle_degrees(listener.bones.get(f"{side}UpperArm", [0, 0, 0, 1]), [0, 0, 0, 1]))
                 for side in ("Left", "Right"))


def eventually(condition, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_mirror_on_the_page_changes_the_pose_sent_over_vmc(browser):
    listener = VmcListener()
    vmc = VmcSink("127.0.0.1", listener.port)
    try:
        with LiveShow("mannequin", ArmUp(), sinks=[vmc]) as show:
            page = Page(browser, show.stage.url)
            assert eventually(lambda: arms(listener) == (60, 0))
            page.page.click("#mirror")
            page.page.wait_for_function("document.getElementById('mirror').getAttribute('aria-pressed') === 'true'",
                                        timeout=5_000)  # the engine's state, echoed back to the page
            assert show.controls.mirror
            assert eventually(lambda: arms(listener) == (0, 60))  # after the blend into the mirrored pose
            assert page.errors == []
            page.close()
    finally:
        vmc.close()
        listener.close()


def test_a_recording_replays_with_pause_and_scrubbing(browser):
    """`onbeat view`'s page: rest for 2 s, then the left arm forward; seeking shows each."""
    frames = 120
    rotations = np.tile([1.0, 0.0, 0.0, 0.0], (frames, NUM_JOINTS, 1))
    rotations[60:, JOINT_INDEX["Left_Shoulder"]] = R.quat_from_axis_angle(np.radians(-90.0) * np.array([0, 1.0, 0]))
    root = np.tile([0.0, -rest_positions()[list(FOOT_JOINTS), 1].min(), 0.0], (frames, 1))
    with Stage(None, port=0, avatar="mannequin", recording=Motion(30.0, root, rotations)) as stage:
        page = Page(browser, stage.url)
        arm_w = "Math.abs(onbeatStage.bones().leftUpperArm[3])"  # cos(half the arm's turn)
        page.js("onbeatStage.seek(1.0)")
        page.page.wait_for_function(f"{arm_w} > 0.9999", timeout=10_000)  # at rest
        page.page.fill("#scrub", "0.75")  # a user dragging the scrub bar to 3 s of 4
        page.page.dispatch_event("#scrub", "input")
        page.page.wait_for_function(f"Math.abs({arm_w} - Math.SQRT1_2) < 0.01", timeout=10_000)  # 90 degrees
        clock = page.js("document.getElementById('clock').textContent")
        time.sleep(0.3)
        assert page.js("document.getElementById('clock').textContent") == clock  # paused
        page.page.click("#play")
        page.page.wait_for_function(f"document.getElementById('clock').textContent !== {clock!r}",
                                    timeout=10_000)  # playing
        assert page.errors == []
        page.close()


@pytest.mark.realtime
def test_the_page_gets_the_frames_at_60_hz_with_low_latency(browser):
    """Over 20 s at 60 Hz after the avatar is in (parsing it blocks the page for a moment): the page gets >= 99 %
    of the frames, and p99 engine-to-page latency is <= 20 ms. On a machine so loaded that the engine's own
    clock falls behind (load above 1.5 per core), only the stage's part is asserted: it loses no more than 1 %
    of the frames the engine sent; the targets are then reported, and the test skips saying why."""
    seconds = 20.0
    with LiveShow() as show:
        page = Page(browser, show.stage.url + "?camera=front")
        time.sleep(1.0)
        page.js("onbeatStage.resetStats()")
        dropped_before = show.engine.stats.dropped
        time.sleep(seconds)
        stats = page.js("({received: onbeatStage.stats.received, missed: onbeatStage.stats.missed, "
                        "latencies: onbeatStage.stats.latencies})")
        engine_dropped = show.engine.stats.dropped - dropped_before
        page.close()
    load = os.getloadavg()
    latency = 1000 * np.array(stats["latencies"])
    expected = seconds * 60
    p99 = np.percentile(latency, 99)
    report = (f"stage delivery over {seconds:.0f} s at 60 Hz: received {stats['received']} of {expected:.0f} "
              f"({100 * stats['received'] / expected:.1f} %), missed {stats['missed']} (the engine's clock dropped "
              f"{engine_dropped}); latency p50 {np.percentile(latency, 50):.2f} ms p99 {p99:.2f} ms max "
              f"{latency.max():.2f} ms; load average {' '.join(f'{x:.2f}' for x in load)} on {os.cpu_count()} cores")
    print("\n" + report)
    assert stats["missed"] - engine_dropped <= 0.01 * expected  # the stage itself loses next to nothing
    if stats["received"] >= 0.99 * expected and p99 <= 20.0:
        return
    if load[0] > 1.5 * os.cpu_count():
        pytest.skip(f"machine overloaded, timing targets not judged: {report}")
    assert stats["received"] >= 0.99 * expected, report
    assert p99 <= 20.0, report


def test_open_to_a_network_the_page_steers_only_with_the_token(browser):
    controls = Controls()
    with Stage(controls, host="0.0.0.0", port=0) as stage:
        local = f"http://127.0.0.1:{stage.port}/"
        watcher = Page(browser, local + "?camera=front", wait_for_frames=False)
        watcher.page.wait_for_function("document.getElementById('controls-note').textContent.includes('token')")
        assert watcher.js("document.getElementById('mirror').disabled") is True
        assert watcher.errors == []
        watcher.close()  # one page at a time: two pages drawing in software on two cores crawl
        steerer = Page(browser, local + f"?token={stage.token}", wait_for_frames=False)
        steerer.page.wait_for_function("!document.getElementById('mirror').disabled")
        steerer.page.click("#mirror")
        assert eventually(lambda: controls.mirror)
        assert steerer.errors == []
        steerer.close()


def test_the_stage_shows_a_crowd_each_at_its_place(browser):
    """A crowd's engine sends the stage every dancer; the page dresses each in its own avatar at its place."""
    from onbeat.choreographers.crowd import Crowd, Dancer, formation
    from onbeat.stream.crowd import CrowdEngine, CrowdMaker
    places, facings = formation("line", 3, 2.0)
    dancers = [Dancer(seed=i, place=tuple(p), facing=f) for i, (p, f) in enumerate(zip(places, facings, strict=True))]
    crowd = Crowd(lambda seed, style: GrooveChoreographer(), dancers, "canon")
    controls = Controls(model="groove")
    stage = Stage(controls, port=0, avatar="mannequin")
    engine = CrowdEngine(SyntheticSource(bpm=120), CrowdMaker({"groove": crowd}), [[], [], []], [stage],
                         controls=controls)
    stage.attach(engine)
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    try:
        page = Page(browser, stage.url)
        page.page.wait_for_function("onbeatStage.status.dancers === 3", timeout=60_000)
        time.sleep(0.5)
        hips = np.array(page.js("onbeatStage.hips()"))
        print(f"hips of the 3 dancers (m): {np.round(hips, 2).tolist()}")
        assert hips.shape == (3, 3)
        # Left to right as placed (x -2, 0, 2 m; the avatar's proportions scale the floor a little).
        assert np.all(np.diff(hips[:, 0]) > 1.0)
        assert np.all(hips[:, 1] > 0.5)  # standing
        assert page.errors == []
        page.close()
    finally:
        engine.stop()
        thread.join(timeout=10)
        stage.close()
