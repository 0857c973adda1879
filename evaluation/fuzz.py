"""Fuzz targets for what onbeat reads from outside, and `onbeat bench fuzz`, which runs them for a while.

Targets (each takes one case from `onbeat.evaluation.fuzz_grammar` and says what became of it; anything else
than the outcomes below is a bug, raised as an exception):
- control: a datagram through `ControlInput` (budgets, parser, time-tag schedule, `Controls`). Every datagram
  is counted exactly once as malformed, or each of its messages as applied or malformed; the controls stay in
  range; and a datagram the parser accepts is parsed to the same messages by python-osc (the reference).
- wav, flac: a file through `FileSource` and `FeatureExtractor`: a clear OnbeatError, or finite feature rows.
- onnx: a model's metadata map through `read_metadata` (decoding and the per-kind bounds); metadata it
  accepts must run a slice of the runtime's real sampling loop (with stand-in networks) to finite poses.

Drivers: `run_random` (plain random decisions, in process) and `run_atheris` (libFuzzer's coverage-guided
search over the grammar's decision bytes, with onbeat's modules instrumented, in a child process: atheris
exits the process when it is done).
"""
import json
import logging
import math
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from onbeat.core.errors import OnbeatError
from onbeat.core.logs import errors_only
from onbeat.evaluation import fuzz_grammar as grammar

FIXED_NOW = 1_700_000_000.0  # the wall clock the control target runs at (its time tags are drawn around it)
# The tags python-osc reads as onbeat does (it skips 'c', 'S', 'I' and reads 't', 'm' as other types).
PYTHON_OSC_TAGS = set("ihfdsbrTFN[]")
MAX_BLOCKS = 64  # audio blocks read per case: a header may claim hours, the case holds a few kB


class Finding(AssertionError):
    """A property a target checks was broken."""


# --- control ------------------------------------------------------------------------------------------------------

def control_case(data: bytes) -> str:
    from onbeat.stream.control import (
        MAX_SCHEDULE_SECONDS,
        MAX_STYLE_NAME,
        ControlInput,
        Controls,
        MalformedPacket,
        parse_packet,
    )
    controls, now = Controls(), [0.0]
    control = ControlInput(controls, clock=lambda: now[0], wall_clock=lambda: FIXED_NOW + now[0])
    control.handle(data, ("127.0.0.1", 1))
    now[0] = MAX_SCHEDULE_SECONDS + 1.0
    control.apply_due()  # every message scheduled for later has been applied now
    try:
        messages = parse_packet(data)
    except MalformedPacket:
        messages = []
    handled = controls.received + controls.malformed
    if control.scheduled or controls.dropped or handled not in ({1, len(messages)} if messages else {1}):
        raise Finding(f"{len(messages)} messages counted as {controls.received} applied, {controls.malformed} "
                      f"malformed, {controls.dropped} dropped, {len(control.scheduled)} still waiting")
    if not messages and controls.malformed != 1:
        raise Finding("a malformed datagram was not counted as malformed")
    if not (0.0 <= controls.energy <= 2.0 and controls.model in controls.models
            and controls.key_pose in (None, *controls.key_poses)
            and (controls.style is None or len(controls.style) <= MAX_STYLE_NAME)):
        raise Finding(f"controls out of range: {controls}")
    if messages:
        _same_as_python_osc(data, [message for _, message in messages])
    return "parsed" if messages else "malformed"


def _same_as_python_osc(data, messages):
    if not all(set(m.tags) <= PYTHON_OSC_TAGS for m in messages):
        return
    from pythonosc.osc_packet import OscPacket
    try:
        theirs = [timed.message for timed in OscPacket(data).messages]
    except Exception as e:  # noqa: BLE001 - any refusal by the reference is a difference
        raise Finding(f"python-osc refuses a datagram onbeat accepts: {e}") from None
    ours = sorted(repr((m.address, list(m.args))) for m in messages)
    reference = sorted(repr((m.address, list(m.params))) for m in theirs)
    if ours != reference:  # python-osc orders a bundle's messages by time: compare them as sets
        raise Finding(f"python-osc reads {reference[:3]}..., onbeat {ours[:3]}...")


# --- audio files --------------------------------------------------------------------------------------------------

def audio_case(data: bytes, suffix: str, folder: str | Path) -> str:
    from onbeat.ear.features import FeatureExtractor
    from onbeat.ear.sources import FileSource
    path = Path(folder) / f"case{suffix}"
    path.write_bytes(data)
    try:
        with FileSource(path, play=False, realtime=False) as source:
            extractor = FeatureExtractor(source.sample_rate)
            for _, block in zip(range(MAX_BLOCKS), source.blocks(), strict=False):
                rows = extractor.process(block.samples)
                if not np.isfinite(rows).all():
                    raise Finding(f"non-finite feature rows from {source.sample_rate} Hz, {source.channels} ch")
    except OnbeatError:
        return "refused"
    return "read"


# --- ONNX metadata ------------------------------------------------------------------------------------------------

def onnx_metadata_case(case: tuple[str, dict]) -> str:
    """What `kinds.load_choreographer` does with a file's metadata, with stand-ins for the ONNX sessions."""
    from onbeat.choreographers.kinds import kind_named
    from onbeat.choreographers.onnx import read_metadata
    from onbeat.core.music import FEATURE_DIM
    _, props = case
    path = Path("model.onnx")
    try:
        metadata = read_metadata(path, props)
        kind = kind_named(metadata["onbeat_kind"])
        kind.check_metadata(path, metadata)
    except OnbeatError:
        return "refused"
    choreographer = kind.runtime_factory()(STAND_INS[kind.name](metadata), metadata, 0)
    motion = choreographer.next_slice(np.zeros((2 * choreographer.slice_frames, FEATURE_DIM), np.float32))
    if motion.num_frames != choreographer.slice_frames or not np.isfinite(motion.rotations).all():
        raise Finding(f"accepted metadata made {motion.num_frames} frames (finite: "
                      f"{np.isfinite(motion.rotations).all()})")
    return "ran"


def _badm_stand_ins(metadata):
    return {"step": lambda noisy, t, context, following, *rest: (noisy, following)}


def _codes_stand_ins(metadata):
    from onbeat.core.representation import POSE_DIM
    codes, frames = metadata["codebook_size"], metadata["slice_frames"]
    return {"gpt": lambda up, down, music, kv, pos: (np.zeros((1, codes)), np.zeros((1, codes)), kv),
            "decoder": lambda codes_up, codes_down: np.zeros((1, frames, POSE_DIM), np.float32)}


# Numpy stand-ins for each kind's graphs, shaped as the runtime expects (their numbers do not matter here).
STAND_INS = {"badm": _badm_stand_ins, "codes": _codes_stand_ins}


# --- targets and drivers ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    generate: Callable[[Any], Any]  # Choices → case
    run: Callable[[Any, str], str]  # (case, workspace folder) → outcome
    encode: Callable[[Any], bytes] = bytes  # case → bytes of a reproducer file


TARGETS = {
    "control": Target(lambda c: grammar.osc_packet(c, FIXED_NOW), lambda case, _: control_case(case)),
    "wav": Target(grammar.wav_file, lambda case, folder: audio_case(case, ".wav", folder)),
    "flac": Target(grammar.flac_file, lambda case, folder: audio_case(case, ".flac", folder)),
    "onnx": Target(grammar.onnx_metadata, lambda case, _: onnx_metadata_case(case),
                   lambda case: json.dumps({"kind": case[0], "props": case[1]}).encode()),
}


@dataclass
class FuzzReport:
    target: str
    driver: str
    seconds: float = 0.0
    cases: int = 0
    outcomes: Counter = field(default_factory=Counter)
    failures: list = field(default_factory=list)  # (reproducer path, what went wrong)
    coverage: str = ""  # libFuzzer's final counters (atheris only)

    def lines(self) -> list[str]:
        rate = self.cases / self.seconds if self.seconds else 0.0
        outcomes = ", ".join(f"{name} {count}" for name, count in sorted(self.outcomes.items())) or "none counted"
        lines = [f"fuzz {self.target} ({self.driver}): {self.cases} cases in {self.seconds:.0f} s ({rate:.0f}/s); "
                 f"outcomes: {outcomes}" + (f"; {self.coverage}" if self.coverage else ""),
                 f"  failures: {len(self.failures)}"]
        lines += [f"  {path}: {what}" for path, what in self.failures[:10]]
        return lines


def run_random(target: str, seconds: float, artifacts: Path, seed: int = 0) -> FuzzReport:
    """Random decisions for `seconds`; each failing case is saved to `artifacts` and the run goes on."""
    spec, report = TARGETS[target], FuzzReport(target, "random, not coverage-guided")
    choices = grammar.RandomChoices(seed)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="onbeat-fuzz-") as folder, errors_only("onbeat"):
        while time.monotonic() - started < seconds:
            case = spec.generate(choices)
            report.cases += 1
            try:
                report.outcomes[spec.run(case, folder)] += 1
            except Exception as e:  # noqa: BLE001 - any exception is a finding, kept with its reproducer
                path = Path(artifacts) / f"{target}-failure-{len(report.failures):03d}"
                path.write_bytes(spec.encode(case))
                report.failures.append((path, "".join(traceback.format_exception_only(e)).strip()[:300]))
    report.seconds = time.monotonic() - started
    return report


# The atheris child: onbeat's modules are imported under `instrument_imports` so libFuzzer sees their coverage.
_ATHERIS_CHILD = """
import sys
import atheris
with atheris.instrument_imports(include=["onbeat"]):
    from onbeat.evaluation import fuzz
fuzz.atheris_child(*sys.argv[1:])
"""


def atheris_available() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def run_atheris(target: str, seconds: float, artifacts: Path) -> FuzzReport:
    """libFuzzer (atheris) for `seconds` in a child process; it stops at the first failure and saves its input."""
    artifacts = Path(artifacts)
    counts = artifacts / f"{target}-outcomes.json"
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", _ATHERIS_CHILD, target, str(seconds), str(artifacts)],
                            capture_output=True, text=True, timeout=seconds + 300)
    report = FuzzReport(target, "atheris, coverage-guided", time.monotonic() - started)
    runs = re.search(r"stat::number_of_executed_units:\s*(\d+)", result.stderr)
    report.cases = int(runs.group(1)) if runs else 0
    coverage = re.findall(r"cov: (\d+) ft: (\d+)", result.stderr)
    if coverage:
        report.coverage = f"coverage {coverage[-1][0]} edges, {coverage[-1][1]} features"
    if counts.is_file():
        report.outcomes.update(json.loads(counts.read_text()))
    if result.returncode:
        crashes = [path for prefix in ("crash", "timeout", "oom") for path in sorted(artifacts.glob(f"{prefix}-*"))]
        what = next((line for line in result.stderr.splitlines() if "Error" in line or "Finding" in line),
                    f"exit status {result.returncode}")
        report.failures.append((crashes[-1] if crashes else "(no input saved)", what.strip()[:300]))
    return report


def atheris_child(target: str, seconds: str, artifacts: str) -> None:
    """Runs in the child (see `_ATHERIS_CHILD`); atheris ends the process when the time is up."""
    import atheris
    spec, outcomes = TARGETS[target], Counter[str]()
    counts = Path(artifacts) / f"{target}-outcomes.json"
    written = [time.monotonic()]
    folder = tempfile.mkdtemp(prefix="onbeat-fuzz-")

    def test_one_input(data):
        case = spec.generate(grammar.ProviderChoices(atheris.FuzzedDataProvider(data)))
        outcomes[spec.run(case, folder)] += 1
        if time.monotonic() - written[0] > 0.5:  # libFuzzer exits without Python's atexit: keep the file fresh
            counts.write_text(json.dumps(outcomes))
            written[0] = time.monotonic()

    atheris.Setup([sys.argv[0], f"-max_total_time={max(1, math.ceil(float(seconds)))}", "-print_final_stats=1",
                   f"-artifact_prefix={artifacts}/", "-timeout=20", "-rss_limit_mb=4096", "-max_len=8192"],
                  test_one_input)
    logging.getLogger("onbeat").setLevel(logging.ERROR)  # each case is a fresh start: only errors are shown
    atheris.Fuzz()


def replay(target: str, path: Path) -> str:
    """Run one saved case again (a random-driver reproducer or an atheris crash input); its outcome."""
    spec, data = TARGETS[target], Path(path).read_bytes()
    if Path(path).name.startswith(f"{target}-failure-"):
        case = data if target != "onnx" else tuple(json.loads(data).values())
    else:
        import atheris
        case = spec.generate(grammar.ProviderChoices(atheris.FuzzedDataProvider(data)))
    with tempfile.TemporaryDirectory(prefix="onbeat-fuzz-") as folder:
        return spec.run(case, folder)
