"""The live engine: sound in, poses out at a steady rate, whatever the model does.

Three threads share a little state:
- analysis: source blocks → FeatureExtractor → the latest feature row and BeatState (+ the audio to recorders);
  it also decides when the music has stopped (quiet or beatless for `silence_seconds`) or come back.
- generation: keeps one slice of 30 fps frames ready ahead of the output clock. The music for a slice starting
  at output time t is `future_features(...)` extrapolated from the latest row up to t, so moves land on the
  *predicted* beats. On silence it switches to the groove's calm idle; if a slice is late it re-anchors the
  next one at "now + expected generation time" and lowers the model's quality (`set_quality`) until it keeps
  up again; a slice with NaN/Inf (or an exception) is replaced by the last good pose and the model is reset.
  Every good slice is finished (`onbeat.choreographers.finishing`: key poses, grounded feet) whichever
  choreographer made it; `/onbeat/keypose` is scheduled there for the next predicted downbeat it can ease into.
- output (the caller's thread): emits a PoseFrame every 1/rate s at absolute deadlines (sleep, then a short
  spin), slerping between the 30 fps frames.
Where the OS allows it, the three threads run at low real-time priorities (SCHED_FIFO; output above the others)
while the show runs. Measured (`onbeat bench crowd`), the output's lateness on a busy machine came from other
processes: they preempted the output thread, and, worse, the analysis or generation thread while it held the GIL,
which the output thread then waited for (priority inversion): both threads it waits on must outrank
them too. It never sends a frame early, never two at once: if it wakes up
  more than one period late it skips the missed deadlines (counted as dropped; the frame index shows the gap).
  When no frame is ready it holds the last pose; after any hold or jump it blends into the new motion.
Output time 0 is the engine start; the source's stream time maps onto it by the blocks' delivery lag (a low
percentile over 2 s; sources must be real-time). The beat the dance follows is the ear's, or an external clock's
when one has something fresh to say (Link, MIDI clock, OSC tempo: `_follow_clocks`, `onbeat.ear.clocks`).
Predicted beats go to sinks as beat events with the output frame nearest to them. A lost input device
(`source.lost`) is reopened every second while the idle dances on.
`/onbeat/model NAME` switches choreographer: one not loaded yet is loaded from the `library` on a worker thread
while the current one dances on, then blended in. `/onbeat/style NAME` (`controls.style`) is handed to the dancing
choreographer before its next slice, and again to each one switched to (`choreographers.base.choose_style`: a
blended change); a style it does not know is warned about and the dance goes on as it was. Sinks that may block
run behind a `QueuedSink`.
`clock`/`sleep` can be injected so tests drive the output scheduler with a fake clock. `simulate` runs the same
steps in one thread on a simulated clock, faster than real time (the evaluation's live path).
The contracts of what the engine drives, with their threading rules: `onbeat.ear.sources.Source`,
`onbeat.choreographers.base.Choreographer`, `onbeat.stream.sinks.Sink`.
"""
import logging
import math
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import replace

import numpy as np

from onbeat.choreographers.base import Choreographer, choose_style
from onbeat.choreographers.finishing import Finishing
from onbeat.choreographers.groove import GrooveChoreographer
from onbeat.core import rotations as R
from onbeat.core.errors import OnbeatError
from onbeat.core.motion import Motion, mirror_pose
from onbeat.core.music import BEATS_PER_BAR, FEATURE_DIM, FEATURE_FPS, FEATURE_NAMES
from onbeat.ear.clocks import BeatGrid, ExternalClock, Handover
from onbeat.ear.features import FeatureExtractor, future_features, row_time
from onbeat.ear.sources import Source
from onbeat.stream.control import Controls
from onbeat.stream.sinks import PoseFrame, QueuedSink, Sink

logger = logging.getLogger(__name__)
RMS_COLUMN = FEATURE_NAMES.index("rms_energy")

QUALITY_LEVELS = (1.0, 0.5, 0.25)  # fraction of the model's full work (e.g. denoising steps) when degraded
LAG_WINDOW_S = 2.0  # stream → output offset: a low percentile of the blocks' delivery lag over this much audio
LAG_PERCENTILE = 20
QUIET_SHARE_OF_PEAK = 0.05  # a row quieter than this share of the running peak RMS is quiet
PEAK_RMS_DECAY = 0.999  # per row: the running peak RMS forgets slowly
PULSE_CONFIDENCE = 0.1  # sound whose beat confidence stays below this has no pulse (room noise): quiet
BEAT_EVENT_CONFIDENCE = 0.2  # beats go to the sinks only above this confidence
FIRST_SLICE_GUESS_S = 0.05  # generation time assumed before any was measured
REANCHOR_FACTOR = 1.2  # a late slice is placed this many typical generation times ahead of now
FAST_SLICE_SHARE = 0.4  # a slice made within this share of its duration counts as fast ...
FAST_SLICES_TO_RECOVER = 10  # ... and this many fast ones in a row raise the quality a level
SPIN_S = 0.0015  # the output thread sleeps until this long before a deadline, then spins
OUTPUT_PRIORITY = 10  # its SCHED_FIFO priority: the lowest band of real-time audio software (JACK clients: 10-90)
WORKER_PRIORITY = 5  # analysis and generation: below the output, above every normal process
RECONNECT_S = 1.0  # a lost input device is reopened this often
WARN_INTERVAL_S = 5.0  # the same kind of warning is logged at most this often


class EngineStats:
    """Counters the dashboard and benchmarks read. Jitter = emission time minus deadline (s)."""

    def __init__(self, window=4096):
        self.frames = self.late = self.dropped = self.held = self.bad_slices = self.slices = 0
        self.max_jitter = 0.0
        self.jitter = deque(maxlen=window)
        self.generation_ms = deque(maxlen=64)
        self.beats_sent = 0
        self.key_poses = []  # (output time of the downbeat it was asked for, name) of each key pose handed on

    def jitter_ms(self, q):
        return 1000.0 * float(np.percentile(self.jitter, q)) if self.jitter else 0.0


class Ear:
    """The analysis the engine runs on each audio block: feature rows with their BeatStates."""

    def __init__(self, sample_rate):
        self.extractor = FeatureExtractor(sample_rate)

    def process(self, block):
        rows = self.extractor.process(block.samples)
        return rows, self.extractor.states

    @staticmethod
    def future(row, beat, frames):
        return future_features(row, beat, frames)


class FrameQueue:
    """30 fps frames placed on the output timeline; sampled with slerp at any output time."""

    def __init__(self, fps=FEATURE_FPS):
        self.fps = fps
        self._frames = deque()  # [time, root (3,), rotations (24, 4), starts a jump (reported once)]
        self._lock = threading.Lock()

    def push(self, start, motion, jump):
        with self._lock:
            for i in range(motion.num_frames):
                self._frames.append([start + i / self.fps, motion.root_translation[i], motion.rotations[i],
                                     jump and i == 0])

    @property
    def end(self):
        """Output time just after the last queued frame (None when empty)."""
        with self._lock:
            return self._frames[-1][0] + 1.0 / self.fps if self._frames else None

    def sample(self, t):
        """(root, rotations, jumped) at time t, or None when t is past the queued frames (or before them)."""
        with self._lock:
            jumped = False
            while len(self._frames) > 1 and self._frames[1][0] <= t:
                jumped |= self._frames.popleft()[3]
            if not self._frames or t < self._frames[0][0] or t >= self._frames[-1][0] + 1.0 / self.fps:
                return None
            t0, root0, rot0, jump0 = self._frames[0]
            jumped |= jump0
            self._frames[0][3] = False
            if len(self._frames) == 1:
                return root0, rot0, jumped
            t1, root1, rot1, jump1 = self._frames[1]
            if jump1:  # never slide into a jump: the old motion holds until it, then the output blends
                return root0, rot0, jumped
            alpha = (t - t0) / (t1 - t0)
            return (1 - alpha) * root0 + alpha * root1, R.quat_slerp(rot0, rot1, alpha), jumped


class Engine:
    def __init__(self, source: Source, choreographers: Mapping[str, Choreographer], sinks: Iterable[Sink] = (), *,
                 ear=None, controls: Controls | None = None, rate: float = 60.0, idle: Choreographer | None = None,
                 library=None, silence_seconds: float = 2.0, blend_seconds: float = 0.3,
                 clock=time.perf_counter, sleep=time.sleep, clocks: Iterable[ExternalClock] = (),
                 real_time: bool = True):
        """choreographers: {name: Choreographer} to start with; `controls.model` picks the active one ("groove"
        is added). `library` (an `onbeat.choreographers.library.Library`) loads the other names it knows when
        the performer switches to them. `clocks`: external beat clocks (`onbeat.ear.clocks`) in order of
        precedence; the OSC control clock (`controls.clock`) comes last. `real_time`: run the output thread at
        real-time priority where the OS allows it (False: as the caller's thread is; benchmarks compare)."""
        self.source, self.rate = source, float(rate)
        self.sinks = [QueuedSink(sink) if sink.may_block else sink for sink in sinks]
        self.idle = idle or GrooveChoreographer()
        self.choreographers = {"groove": self.idle, **choreographers}
        self.library = library
        self.controls = controls or Controls(model=next(iter(choreographers), "groove"))
        self.controls.models = tuple(dict.fromkeys([*self.choreographers, *(library.names() if library else ())]))
        self._loading = None  # the name being loaded from the library, on its worker thread
        self._styles_asked: dict[int, str | None] = {}  # id(choreographer) -> the controls' style last handed to it
        self.ear = ear or Ear(source.sample_rate)
        self.clocks = [*clocks, self.controls.clock]
        self.leader = "ear"  # the clock the dance's timing follows
        self._handover = Handover()
        self.clock, self.sleep = clock, sleep
        self.real_time = real_time
        self.silence_seconds, self.blend_seconds = silence_seconds, blend_seconds
        self.stats = EngineStats()
        self.first_slice_seconds = FIRST_SLICE_GUESS_S  # generation time expected before any slice was measured
        self.queue = FrameQueue()
        self.finishing = Finishing()  # key poses and grounded feet, for every choreographer's slices
        self.silent = True  # until the music proves otherwise
        self.beat = None  # latest BeatState
        self.quality = 0
        self._row, self._row_time = np.zeros(FEATURE_DIM, np.float32), 0.0
        self._quiet_since, self._peak_rms = 0.0, 1e-4
        self._offset = 0.0  # output time minus stream time
        self._lags: deque[tuple[float, float]] = deque()  # (stream time, lag) of blocks
        self._fed = 0.0  # seconds of audio fed to the ear
        self._last_good = None  # (root, rotations) of the last finite frame generated
        self._active, self._need_jump = None, True
        self._stop = threading.Event()
        self._state_lock = threading.Lock()
        self._t0 = None
        self._errors: list[BaseException] = []
        self._warned: dict[str, float] = {}  # message kind -> clock time it was last logged
        self._fast_slices = 0  # consecutive slices generated well within budget, to restore quality
        self._last, self._blend = None, 1.0  # last emitted (root, rotations); weight of it in the next frame
        self._showing = False  # whether generated frames have reached the output yet
        self._beats_sent_until = -math.inf  # time of the last beat event sent

    # --- time ---------------------------------------------------------------------------------------------
    def now(self):
        """Seconds on the output timeline."""
        return self.clock() - self._t0

    def stop(self):
        self._stop.set()

    @property
    def running(self):
        return self._t0 is not None and not self._stop.is_set()

    @property
    def quality_level(self):
        return QUALITY_LEVELS[self.quality]

    # --- analysis thread ----------------------------------------------------------------------------------
    def _analyse(self):
        while True:
            for block in self.source.blocks():
                if self._stop.is_set():
                    break
                self._analyse_block(block)
            if self._stop.is_set() or not self.source.lost:
                break
            self._reconnect()
        self._analysis_done = True

    def _analyse_block(self, block):
        # Stream time as the extractor counts it (the samples it was fed), which its beat times are in.
        stream_time = self._fed
        duration = len(block.samples) / block.sample_rate
        self._fed += duration
        # Output time = stream time + offset, the offset being a low percentile of the lag between a block's
        # start and its arrival over the last 2 s of audio: the blocks delivered soonest, not those a busy thread
        # read late; a backlog (audio buffered before the engine started, or during an outage) does not delay
        # the beats, and an audio clock drifting against the system's is followed.
        self._lags.append((stream_time, self.now() - stream_time))
        while self._lags[0][0] < stream_time - LAG_WINDOW_S:
            self._lags.popleft()
        self._offset = float(np.percentile([lag for _, lag in self._lags], LAG_PERCENTILE))
        for sink in self.sinks:
            sink.send_audio(block)
        rows, states = self.ear.process(block)
        if len(rows):
            state, offset = states[-1], self._offset  # stream time → output time
            state = replace(state, time=state.time + offset, next_beats=state.next_beats + offset,
                            last_beat=state.last_beat + offset)
            self._take_analysis(rows[-1], self._follow_clocks(state))

    def _follow_clocks(self, heard):
        """The beat the dance follows: the first external clock with something fresh to say (Link, MIDI clock,
        OSC: they win on timing), else the ear's `heard` state; `Handover` eases each change of leader. Clocks
        keep host time (the engine's clock), the dance the output timeline."""
        ear = BeatGrid.of(heard).shifted(self._t0)
        for clock in self.clocks:
            clock.hear(ear, heard.confidence)
        self.leader, grid = next(((c.name, g) for c in self.clocks if (g := c.grid()) is not None), ("ear", ear))
        followed = self._handover.follow(self.leader, grid.shifted(-self._t0), heard.time)
        if self._handover.settled:
            return heard  # the ear alone, as it is
        return followed.beat_state(heard.time, heard.confidence if self.leader == "ear" else 1.0)

    def _reconnect(self):
        """The input device went away: dance the idle (the output never stops) and reopen it every second."""
        self._warn(f"audio input lost: {self.source.message or 'no more audio'}; dancing the idle and retrying")
        with self._state_lock:
            self.silent, self.beat = True, None
        while not self._stop.wait(RECONNECT_S):
            try:
                self.source.reopen()
            except OnbeatError:
                continue
            logger.info("audio input is back")
            self._lags.clear()  # the stream now lags the output clock by the outage: measure it again
            return

    def _take_analysis(self, row, state):
        rms = float(row[RMS_COLUMN])
        self._peak_rms = max(rms, self._peak_rms * PEAK_RMS_DECAY, 1e-4)
        # Quiet, or sound without any pulse (room noise); music with a weak beat still counts as music.
        quiet = rms < QUIET_SHARE_OF_PEAK * self._peak_rms or state.confidence < PULSE_CONFIDENCE
        with self._state_lock:
            self._row, self._row_time, self.beat = np.asarray(row, np.float32), row_time(state), state
            if not quiet:
                self._quiet_since = None
                self.silent = False
            elif self._quiet_since is None:
                self._quiet_since = state.time
            elif state.time - self._quiet_since >= self.silence_seconds:
                self.silent = True

    # --- generation thread --------------------------------------------------------------------------------
    def _generate(self):
        while not self._stop.is_set():
            wait = self._generation_step()
            if wait > 0:
                self._stop.wait(wait)

    def _generation_step(self):
        """Queue the next slice if it is due; returns how long to wait before looking again (0: at once)."""
        choreographer = self.idle if self.silent else self._wanted_choreographer()
        slice_seconds = choreographer.slice_frames / choreographer.fps
        now, end = self.now(), self.queue.end
        if end is None or end < now + 0.5 / self.rate:
            if end is not None:
                self._degrade()
            # Behind (or starting): re-anchor the slice where it will be ready; the output blends into it.
            expected = (np.median(self.stats.generation_ms) / 1000.0 if self.stats.generation_ms
                        else self.first_slice_seconds)
            start, jump = now + REANCHOR_FACTOR * expected + 1.0 / self.rate, True
        elif end - now > slice_seconds:  # lookahead of one slice is enough
            return min(end - now - slice_seconds, 0.02)
        else:
            start, jump = end, False
        if choreographer is not self._active:
            self._active, jump = choreographer, True
        if not self.silent:
            self._ask_style(choreographer)
        self._queue_slice(choreographer, start, jump or self._need_jump)
        return 0.0

    def _wanted_choreographer(self):
        """The choreographer `controls.model` names; while one not yet loaded loads, the current one dances on."""
        name = self.controls.model
        if name in self.choreographers:
            return self.choreographers[name]
        if self.library is not None and self._loading is None:
            self._loading = name
            threading.Thread(target=self._load, args=(name,), name="onbeat-load", daemon=True).start()
        return self._active or self.idle

    def _ask_style(self, choreographer):
        """Hand the performer's style (`controls.style`) to `choreographer` once per change."""
        wanted = self.controls.style
        if wanted is None or self._styles_asked.get(id(choreographer)) == wanted:
            return
        self._styles_asked[id(choreographer)] = wanted
        try:
            choose_style(choreographer, wanted or None)
        except OnbeatError as e:
            name = next((n for n, c in self.choreographers.items() if c is choreographer), "the model")
            self._warn(f"/onbeat/style {wanted!r} ignored by {name}: {e}")

    def _load(self, name):
        try:
            self.choreographers[name] = self.library.load(name)
            self.choreographers[name].set_quality(QUALITY_LEVELS[self.quality])
        except OnbeatError as e:
            self._warn(f"model switch: {e}")
        finally:
            self._loading = None

    def _queue_slice(self, choreographer, start, jump):
        # The slice's music and the next slice's as lookahead (a choreographer uses what it needs of it).
        music = self._music_for(start, 2 * choreographer.slice_frames)
        key_pose = self._key_pose_for(start, choreographer)
        began = self.clock()
        try:
            made = choreographer.next_slice(music, energy=self.controls.energy, key_pose=key_pose)
            motion = self._finished(made, start, jump)
        except Exception as e:  # noqa: BLE001 - a model failure must not stop the show; it is counted and logged
            made = motion = None
            self._warn(f"choreographer failed: {type(e).__name__}: {e}")
        good = motion is not None
        elapsed = self.clock() - began
        self.stats.generation_ms.append(1000.0 * elapsed)
        self.stats.slices += 1
        if good:
            fast = elapsed < FAST_SLICE_SHARE * choreographer.slice_frames / choreographer.fps
            self._fast_slices = self._fast_slices + 1 if fast else 0
            if self._fast_slices >= FAST_SLICES_TO_RECOVER:
                self._recover()
            self._last_good = (motion.root_translation[-1], motion.rotations[-1])
            self._need_jump = False
        else:
            self.stats.bad_slices += 1
            if made is not None:
                self._warn("choreographer returned NaN/Inf: holding the last good pose")
            choreographer.reset()  # its state may hold the NaN; start it again from scratch
            motion = self._held_slice(choreographer.slice_frames)
            self._need_jump = True
        self.queue.push(start, motion, jump)

    def _finished(self, motion, start, jump):
        """The slice, finished (`onbeat.choreographers.finishing`); None when it has NaN/Inf (or is no Motion).
        A crowd (`onbeat.stream.crowd`) finishes each of its dancers' slices."""
        return self.finishing(motion, start, continues=not jump) if _finite(motion) else None

    def _held_slice(self, frames):
        root, rotations = self._last_good or self._rest_pose()
        return Motion(FEATURE_FPS, np.repeat(root[None], frames, 0), np.repeat(rotations[None], frames, 0))

    def _rest_pose(self):
        """The groove's idle stance, shown before the first slice is ready."""
        rest = GrooveChoreographer().next_slice(np.zeros((1, FEATURE_DIM), np.float32), energy=0.0)
        return rest.root_translation[0], rest.rotations[0]

    def _music_for(self, start, frames):
        """Features for `frames` frames from output time `start`, predicted from the latest row."""
        with self._state_lock:
            row, row_time, beat = self._row, self._row_time, self.beat
        if beat is None:
            return np.zeros((frames, FEATURE_DIM), np.float32)
        first = int(round((start - row_time) * FEATURE_FPS))  # future frame j is at row_time + j / fps
        return np.asarray(self.ear.future(row, beat, max(frames, first + frames - 1))[-frames:], np.float32)

    def _key_pose_for(self, start, choreographer):
        """Hands a requested key pose on to the finishing for the next predicted downbeat it can still ease into
        (without a beat clock: as soon as it can), and returns the name of a key pose landing within this slice,
        for the choreographer to move towards (the finishing lands it whatever the choreographer does)."""
        name = self.controls.take_key_pose()
        if name is not None:
            downbeat = self._next_downbeat(start + self.finishing.landing.lead_seconds)
            replaced = self.finishing.strike(name, downbeat)
            if replaced is None:
                self._warn(f"key pose: no pose called {name!r}")
            else:
                self.stats.key_poses = [pose for pose in self.stats.key_poses if pose not in replaced]
                self.stats.key_poses.append((downbeat, name))
        return self.finishing.landing.landing_between(start, start + choreographer.slice_frames / choreographer.fps)

    def _next_downbeat(self, earliest):
        """Output time of the first predicted downbeat at or after `earliest` (`earliest` without a beat clock)."""
        beat = self.beat
        if beat is None or not len(beat.next_beats):
            return earliest
        period = 60.0 / max(beat.bpm, 1.0)
        bar = BEATS_PER_BAR * period
        downbeat = beat.next_beats[0] + ((-1 - beat.bar_position) % BEATS_PER_BAR) * period  # next_beats[k] is beat
        return float(downbeat + max(0, math.ceil((earliest - downbeat) / bar)) * bar)  # bar_position + 1 + k

    def _degrade(self):
        if self.quality + 1 < len(QUALITY_LEVELS):
            self.quality += 1
            self._set_quality()
            self._warn(f"generation is behind the output clock: quality {QUALITY_LEVELS[self.quality]:.2f}")

    def _recover(self):
        self._fast_slices = 0
        if self.quality > 0:
            self.quality -= 1
            self._set_quality()

    def _set_quality(self):
        for choreographer in self.choreographers.values():
            choreographer.set_quality(QUALITY_LEVELS[self.quality])

    # --- output (caller's thread) -------------------------------------------------------------------------
    def run(self, seconds=None):
        """Run until `seconds` of output (None: until the source ends or `stop()`); returns the stats."""
        self.warm_up()
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(0.0005)  # the output thread gets the GIL within 0.5 ms, not the default 5 ms
        self._t0 = self.clock()
        self.started_wall = time.time()  # output time 0 on the wall clock, for receivers in other processes
        self._analysis_done = False
        workers = [threading.Thread(target=self._guarded, args=(fn,), name=f"onbeat-{fn.__name__[1:]}", daemon=True)
                   for fn in (self._analyse, self._generate)]
        for worker in workers:
            worker.start()
        restore_priority = real_time_priority(OUTPUT_PRIORITY) if self.real_time else None
        try:
            self._output(seconds)
        finally:
            if restore_priority:
                restore_priority()
            sys.setswitchinterval(switch_interval)
            self._stop.set()
            self.source.close()
            for worker in workers:
                worker.join(timeout=2.0)
            generation = workers[1]
            if generation.is_alive():  # in a long model step: onnxruntime aborts the process if it exits meanwhile
                logger.info("waiting for the model to finish its slice")
                generation.join()
        if self._errors:
            raise self._errors[0]
        return self.stats

    def simulate(self, seconds=None):
        """`run` on a simulated clock, in this thread, as fast as the work allows; returns the stats.

        The same steps as `run`'s threads, interleaved: before each output frame every source block whose last
        sample has been captured by then is analysed (a block arrives when it is complete, as from a live
        input), then the generation step runs until its lookahead is full, then the frame is emitted. Work takes
        no simulated time, so the model is never behind, and the dance is deterministic for deterministic
        choreographers. The source must yield its blocks at once (not paced in real time)."""
        clock = SimulatedClock()
        self.clock, self.sleep = clock, clock.sleep
        self.first_slice_seconds = 0.0  # generating takes no simulated time: the first slice starts on the grid
        self._t0 = clock()
        self.started_wall = time.time()
        self._analysis_done = False
        blocks = iter(self.source.blocks())
        block = next(blocks, None)
        index = 0
        try:
            while not self._output_done(index, seconds):
                t = index / self.rate
                while block is not None and self._fed + len(block.samples) / block.sample_rate <= t:
                    clock.set(self._t0 + self._fed + len(block.samples) / block.sample_rate)
                    self._analyse_block(block)
                    block = next(blocks, None)
                self._analysis_done = block is None
                clock.set(self._t0 + t)
                while self._generation_step() == 0.0:
                    pass
                index = self._output_frame(index)
        finally:
            self._stop.set()
            self.source.close()
        return self.stats

    def _guarded(self, fn):
        if self.real_time:
            real_time_priority(WORKER_PRIORITY, quiet=True)  # the output thread says whether it worked
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread, which re-raises it
            self._errors.append(e)
            self._stop.set()

    def warm_up(self) -> None:
        """One slice of silence from each choreographer, then `reset()`, before the clock starts. The sessions are
        warmed at load (`OnnxStep`), but a choreographer's first whole slice (sampler, decoding, finishing: first
        calls, cold code pages) still costs up to 4 later ones (badm: 7-16 ms, then 4 ms), and would otherwise fall
        on the first slice the output clock waits for. A choreographer that fails here is left to the generation
        thread, which counts and replaces its failures."""
        for choreographer in self.choreographers.values():
            try:
                choreographer.next_slice(np.zeros((choreographer.slice_frames, FEATURE_DIM), np.float32))
            except Exception as e:  # noqa: BLE001 - the show handles a failing model when it runs it
                logger.debug("warming up %s failed: %s", type(choreographer).__name__, e)
            choreographer.reset()

    def _output(self, seconds):
        index = 0
        while not self._output_done(index, seconds):
            self._wait_until(self._t0 + index / self.rate)
            index = self._output_frame(index)

    def _output_done(self, index, seconds):
        t = index / self.rate
        # The source has ended and its last moves have been shown.
        return (self._stop.is_set() or (seconds is not None and t >= seconds)
                or (self._analysis_done and t >= self._row_time + 0.5))

    def _output_frame(self, index):
        """Emit output frame `index` (due now, or late); returns the index of the next frame."""
        period = 1.0 / self.rate
        t = index * period
        lateness = self.now() - t
        if lateness >= period:  # woke up too late: skip the missed deadlines rather than bunching
            missed = int(lateness // period)
            index += missed
            self.stats.dropped += missed
            t = index * period
            lateness -= missed * period
        self._emit(t, index, self._next_pose(self.queue.sample(t), period))
        # Beat events go out with the frame nearest to the beat (half a frame early at most).
        self._beats_sent_until = self._send_beats(t + 0.5 * period, self._beats_sent_until)
        self.stats.jitter.append(lateness)
        self.stats.max_jitter = max(self.stats.max_jitter, lateness)
        self.stats.late += lateness > 0.25 * period
        return index + 1

    def _next_pose(self, sample, period):
        """The pose to show: the sampled one, blended from the last shown after a hold or a jump."""
        if self._last is None:
            self._last = sample[:2] if sample is not None else self._rest_pose()
        self._showing = self._showing or sample is not None
        if sample is None or self.controls.hold:
            self.stats.held += sample is None and self._showing  # not the wait for the very first slice
            self._blend = 1.0
            return self._last
        root, rotations, jumped = sample
        if jumped:
            self._blend = 1.0
        if self._blend > 0.0:
            root = self._blend * self._last[0] + (1 - self._blend) * root
            rotations = R.quat_slerp(rotations, self._last[1], self._blend)
            self._blend = max(0.0, self._blend - period / self.blend_seconds)
        self._last = (root, rotations)
        return self._last

    def _emit(self, t, index, pose):
        root, rotations = pose
        if self.controls.mirror:
            root, rotations = mirror_pose(root, rotations)
        frame = PoseFrame(t, root, rotations, index=index)  # positions: computed if a sink asks
        for sink in self.sinks:
            sink.send(frame)
        self.stats.frames += 1

    def _send_beats(self, t, after):
        """Send the predicted beats up to output time `t`; returns the time of the last one sent."""
        beat = self.beat
        if beat is None or beat.confidence < BEAT_EVENT_CONFIDENCE or self.silent:
            return after
        period = 60.0 / max(beat.bpm, 1.0)
        # The analysis runs up to a block ahead of the output clock: a beat it has just passed is no longer
        # among `next_beats` but is its `last_beat`.
        for k, beat_time in enumerate([beat.last_beat, *beat.next_beats], start=-1):
            if not beat_time <= t:  # also skips NaN (no beat yet)
                continue
            if beat_time > after + 0.5 * period:
                bar_position = (beat.bar_position + 1 + k) % BEATS_PER_BAR
                event = replace(beat, time=float(beat_time), phase=0.0, bar_position=bar_position, is_beat=True,
                                is_downbeat=bar_position == 0)
                for sink in self.sinks:
                    sink.send_beat(event)
                self.stats.beats_sent += 1
                after = beat_time
        return after

    def _wait_until(self, deadline):
        """Sleep until shortly before the deadline, then spin: sleep alone wakes up to a few ms late."""
        remaining = deadline - self.clock()
        if remaining > SPIN_S:
            self.sleep(remaining - SPIN_S)
        while self.clock() < deadline:
            pass

    def _warn(self, message, interval=WARN_INTERVAL_S):
        """Log a message at most once per `interval` seconds per kind of message."""
        kind = message.split(":")[0]
        now = self.clock()
        if now - self._warned.get(kind, -math.inf) >= interval:
            self._warned[kind] = now
            logger.warning("%s", message)


def real_time_priority(priority: int, quiet: bool = False):
    """Put the calling thread on SCHED_FIFO at `priority` (threads it starts get the normal policy); returns the
    function that puts it back, or None where the OS refuses (no CAP_SYS_NICE or RLIMIT_RTPRIO, not Linux)."""
    try:
        policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
        os.sched_setscheduler(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(priority))
    except (AttributeError, OSError) as e:
        if not quiet:
                logger.info("output clock at normal priority (real-time scheduling: %s): expect more jitter on a "
                        "busy machine", getattr(e, "strerror", None) or "not available here")
        return None
    return lambda: os.sched_setscheduler(0, policy, param)


class SimulatedClock:
    """The clock of `Engine.simulate`: time moves only when the driver sets it (or something sleeps)."""

    def __init__(self):
        self.time = 0.0

    def __call__(self):
        return self.time

    def set(self, time_):
        self.time = max(self.time, time_)

    def sleep(self, seconds):
        self.time += max(seconds, 0.0)


def _finite(motion):
    return (isinstance(motion, Motion) and np.isfinite(motion.rotations).all()
            and np.isfinite(motion.root_translation).all())
