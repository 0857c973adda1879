"""Run the exported choreographers with onnxruntime: no torch, CPU or CUDA.

An exported model is one ONNX graph per streaming step (BADM: the denoiser; codes: the GPT step and the VQ-VAE
decoder) with everything the runtime needs stored in the file's metadata (fps, slice length, feature layout,
skeleton, normaliser...). The sampling loops themselves live once, in numpy, in `onbeat.models.*_sampler`: torch
feeds them callables for training and evaluation, this module feeds them the same callables backed by ONNX
sessions (`OnnxStep`).
"""
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onbeat.choreographers import badm_sampler, codes_sampler
from onbeat.core import rotations as R
from onbeat.core.errors import OnbeatError
from onbeat.core.paths import ASSETS
from onbeat.core.representation import POSE_DIM, ROTATION_SLICE, decode, root_state
from onbeat.core.skeleton import JOINT_INDEX, JOINT_NAMES, NUM_JOINTS
from onbeat.core.music import FEATURE_DIM, FEATURE_FPS, FEATURE_NAMES
from onbeat.choreographers.groove import KEY_POSES, downbeat_frame

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the meaning of an exported graph's inputs/outputs changes
DEFAULT_MODELS = {"badm": "badm.onnx", "codes": "codes.onnx"}

# Metadata keys stored as plain strings; every other key holds JSON (the model's own `metadata()` entries).
PLAIN_KEYS = ("onbeat_format_version", "onbeat_kind", "feature_names", "joint_names", "checkpoint_sha256")
_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32,
                "tensor(bool)": np.bool_, "tensor(double)": np.float64}


def metadata_props(kind, model_metadata, checkpoint_sha256):
    """The string → string metadata written into an exported ONNX file (see `decode_metadata`)."""
    props = {"onbeat_format_version": str(FORMAT_VERSION), "onbeat_kind": kind,
             "feature_names": ",".join(FEATURE_NAMES), "joint_names": ",".join(JOINT_NAMES),
             "checkpoint_sha256": checkpoint_sha256}
    props.update({key: json.dumps(value) for key, value in model_metadata.items() if key not in props})
    return props


def decode_metadata(props):
    """The inverse of `metadata_props`: plain keys stay strings, the others are decoded from JSON."""
    return {key: value if key in PLAIN_KEYS else json.loads(value) for key, value in props.items()}


def read_metadata(path, props, kind):
    """The metadata of the model file `path` of `kind`, from its string → string map: decoded and checked."""
    try:
        metadata = decode_metadata(props)
    except (ValueError, RecursionError) as e:  # not JSON, or JSON nested deeper than the parser's recursion limit
        raise OnbeatError(f"{path}: damaged metadata ({str(e)[:200]})") from None
    check_metadata(path, metadata, kind)
    return metadata


def check_metadata(path, metadata, kind):
    """Raise one OnbeatError naming the first thing in `metadata` this onbeat cannot run."""
    def expect(key, wanted, what):
        found = metadata.get(key)
        if found is None:
            raise OnbeatError(f"{path}: not an onbeat model (no '{key}' in its metadata)")
        if found != wanted:
            raise OnbeatError(f"{path}: {what} {found!r} does not match this onbeat's {wanted!r}; re-export it "
                              "with `onbeat export`")

    expect("onbeat_format_version", str(FORMAT_VERSION), "format version")
    expect("onbeat_kind", kind, "model kind")
    features = metadata.get("feature_names", "").split(",")
    if features != list(FEATURE_NAMES):
        problem = _first_difference(features, FEATURE_NAMES)
        raise OnbeatError(f"{path}: feature layout does not match this onbeat's ({problem}); re-export it with "
                          "`onbeat export`")
    joints = metadata.get("joint_names", "").split(",")
    if joints != list(JOINT_NAMES):
        raise OnbeatError(f"{path}: skeleton does not match SMPL-24 ({_first_difference(joints, JOINT_NAMES)})")
    check_metadata_values(path, metadata, kind)


# --- metadata values ---------------------------------------------------------------------------------------------
# Every metadata value a runtime reads, per model kind, with its type and bounds: a file that breaks one is
# refused at load with one line naming the key (a damaged or hostile file would otherwise crash, hang the
# show, or allocate without limit). One table, so that a model-kind registry can take its kind's rows along.

@dataclass(frozen=True)
class Integer:
    low: int
    high: int

    def problem(self, value):
        if isinstance(value, bool) or not isinstance(value, int):
            return "must be an integer"
        return None if self.low <= value <= self.high else f"must be {self.low}..{self.high}"


@dataclass(frozen=True)
class Number:
    low: float
    high: float
    above_low: bool = False  # low itself is excluded

    def problem(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return "must be a finite number"
        ok = (value > self.low if self.above_low else value >= self.low) and value <= self.high
        return None if ok else f"must be {'above ' if self.above_low else ''}{self.low:g}..{self.high:g}"


@dataclass(frozen=True)
class Numbers:
    """A list of `length` numbers, each within `each`."""
    length: int
    each: Number

    def problem(self, value):
        if not isinstance(value, list) or len(value) != self.length:
            return f"must be a list of {self.length} numbers"
        bad = next((i for i, v in enumerate(value) if self.each.problem(v)), None)
        return None if bad is None else f"item {bad} {self.each.problem(value[bad])}"


@dataclass(frozen=True)
class Table:
    """A JSON object with exactly these keys (`optional` ones may be missing)."""
    keys: dict
    optional: tuple = ()

    def problem(self, value):
        if not isinstance(value, dict):
            return "must be an object"
        missing = set(self.keys) - set(value) - set(self.optional)
        unknown = set(value) - set(self.keys)
        if missing or unknown:
            return f"{'misses' if missing else 'has unknown'} {', '.join(sorted(missing or unknown))}"
        return next((f"{key} {self.keys[key].problem(v)}" for key, v in value.items() if self.keys[key].problem(v)),
                    None)


MAX_SLICE_FRAMES = 300  # 10 s at 30 fps
METADATA_VALUES = {
    "badm": {
        "slice_frames": Integer(2, MAX_SLICE_FRAMES),  # slices join on their last two frames
        "ddim_steps": Integer(1, 200),  # each step is a network call; the live engine runs them every slice
        "pose_mean": Numbers(POSE_DIM, Number(-1e6, 1e6)),
        "pose_std": Numbers(POSE_DIM, Number(0.0, 1e6, above_low=True)),
    },
    "codes.gpt": {
        "slice_frames": Integer(1, MAX_SLICE_FRAMES),
        "rate": Integer(1, MAX_SLICE_FRAMES),
        "layers": Integer(1, 64), "heads": Integer(1, 64), "context": Integer(1, 8192), "head_dim": Integer(1, 1024),
        "codebook_size": Integer(1, 65536),
        "start_token": Integer(0, 65536),
        "decode_window": Integer(1, 4096),
        "sampling": Table({"temperature": Number(0.0, 100.0, above_low=True), "top_k": Integer(0, 65536),
                           "repeat_window": Integer(0, 4096), "repeat_penalty": Number(0.0, 100.0),
                           "smoothing": Number(0.0, 0.99)}, optional=("smoothing",)),
    },
    "codes.decoder": {},
}
MAX_CACHE_BYTES = 256 << 20  # the codes GPT's key/value cache, allocated from metadata (shipped model: 72 kB)


def check_metadata_values(path, metadata, kind):
    """OnbeatError naming the first metadata value of `kind` that is missing or out of bounds."""
    for key, spec in METADATA_VALUES.get(kind, {}).items():
        if key not in metadata:
            raise OnbeatError(f"{path}: metadata has no '{key}'; re-export it with `onbeat export`")
        problem = spec.problem(metadata[key])
        if problem:
            shown = repr(metadata[key])
            raise OnbeatError(f"{path}: metadata {key} = {shown if len(shown) < 40 else shown[:37] + '...'}: "
                              f"{problem}")
    if kind == "codes.gpt":
        if metadata["slice_frames"] % metadata["rate"]:
            raise OnbeatError(f"{path}: metadata slice_frames {metadata['slice_frames']} is not a multiple of "
                              f"rate {metadata['rate']}")
        if metadata["start_token"] > metadata["codebook_size"]:
            raise OnbeatError(f"{path}: metadata start_token {metadata['start_token']} is past the codebook "
                              f"({metadata['codebook_size']} codes)")
        cache = 4 * 2 * math.prod(metadata[key] for key in ("layers", "heads", "context", "head_dim"))
        if cache > MAX_CACHE_BYTES:
            raise OnbeatError(f"{path}: metadata layers x heads x context x head_dim ask for a {cache / 2 ** 20:.0f} "
                              f"MiB cache (at most {MAX_CACHE_BYTES / 2 ** 20:.0f} MiB)")


def _first_difference(found, wanted):
    if len(found) != len(wanted):
        return f"{len(found)} names, expected {len(wanted)}"
    index = next(i for i, (a, b) in enumerate(zip(found, wanted)) if a != b)
    return f"name {index} is {found[index]!r}, expected {wanted[index]!r}"


def available_devices():
    """The devices onnxruntime could run on here: always 'cpu', 'cuda' when the CUDA provider is installed."""
    import onnxruntime as ort
    return ["cpu"] + (["cuda"] if "CUDAExecutionProvider" in ort.get_available_providers() else [])


def open_session(path, threads=1, device="auto"):
    """An onnxruntime session for `path` on `device` ('auto' = CUDA when it really works, else CPU). One thread
    by default: a step is ~1 ms of small matrices, where a second thread gains little and takes a core from the
    live engine's audio and output threads (`onbeat bench model` compares 1 and 2)."""
    import onnxruntime as ort
    ort.set_default_logger_severity(3)  # a CUDA fallback or an unused initializer is not the user's problem
    path = Path(path)
    if not path.is_file():
        raise OnbeatError(f"{path}: no such model file")
    if device not in ("auto", "cpu", "cuda"):
        raise OnbeatError(f"unknown device {device!r}: choose auto, cpu or cuda")
    if device == "cuda" and "cuda" not in available_devices():
        raise OnbeatError("device cuda: onnxruntime has no CUDA provider here (install onnxruntime-gpu)")
    use_cuda = device == "cuda" or (device == "auto" and "cuda" in available_devices())
    providers = (["CUDAExecutionProvider"] if use_cuda else []) + ["CPUExecutionProvider"]
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Spinning threads would steal the cores the audio and output threads of the live engine need.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as e:  # onnxruntime raises its own untyped errors for unreadable graphs
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise OnbeatError(f"{path}: not a readable ONNX model ({reason[:200]})") from None
    if device == "cuda" and "CUDAExecutionProvider" not in session.get_providers():
        raise OnbeatError(f"device cuda: onnxruntime could not start CUDA for {path} (driver or CUDA libraries)")
    return session


class OnnxStep:
    """One exported graph as a numpy callable: `step(*arrays)` → the output array (or a tuple of them), inputs
    in the graph's order (or by name), cast to the dtypes the graph expects."""

    def __init__(self, path, kind, threads=1, device="auto"):
        self.path = Path(path)
        self.session = open_session(path, threads, device)
        self.metadata = read_metadata(self.path, self.session.get_modelmeta().custom_metadata_map, kind)
        self.inputs = [(i.name, _NUMPY_TYPES.get(i.type, np.float32)) for i in self.session.get_inputs()]
        self.device = "cuda" if "CUDAExecutionProvider" in self.session.get_providers() else "cpu"
        # One call on zeros: onnxruntime allocates on its first run, which must not delay the first live slice.
        shapes = [i.shape for i in self.session.get_inputs()]
        if all(isinstance(size, int) for shape in shapes for size in shape):
            self(*(np.zeros(shape) for shape in shapes))

    def __call__(self, *arrays, **named):
        if len(arrays) + len(named) != len(self.inputs):
            raise TypeError(f"{self.path.name} takes {len(self.inputs)} inputs, got {len(arrays) + len(named)}")
        values = dict(zip((name for name, _ in self.inputs), arrays), **named)
        feed = {name: np.ascontiguousarray(values[name], dtype=dtype) for name, dtype in self.inputs}
        outputs = self.session.run(None, feed)
        return outputs[0] if len(outputs) == 1 else tuple(outputs)


# --- loading ---------------------------------------------------------------------------------------------------

def codes_graph_paths(path):
    """{graph kind: file} of an exported codes model: `codes.onnx` (or either of its files) names the pair
    `codes.gpt.onnx` + `codes.decoder.onnx`."""
    path = Path(path)
    name = path.name
    for suffix in (".gpt.onnx", ".decoder.onnx", ".onnx"):
        if name.endswith(suffix):
            name = name[:-len(suffix)]
            break
    return {f"codes.{part}": path.with_name(f"{name}.{part}.onnx") for part in ("gpt", "decoder")}


def load_choreographer(path, threads=1, device="auto", seed=None):
    """A choreographer from exported ONNX: a BADM file, or a codes pair named by `codes_graph_paths`."""
    path, codes = Path(path), codes_graph_paths(path)
    one_file = path.is_file() and not path.name.endswith((".gpt.onnx", ".decoder.onnx"))
    if one_file or not any(p.is_file() for p in codes.values()):
        step = OnnxStep(path, "badm", threads, device)  # a missing file is reported under the name given
        return BadmChoreographer(step, step.metadata, seed)
    gpt_step, decoder = (OnnxStep(p, kind, threads, device) for kind, p in codes.items())
    return CodesChoreographer(gpt_step, decoder, gpt_step.metadata, seed)


def load_default_choreographer(name="badm", threads=1, device="auto", seed=None):
    """The shipped model `name` ('badm' or 'codes'), exported in `stream/assets/`."""
    if name not in DEFAULT_MODELS:
        raise OnbeatError(f"unknown model {name!r}: choose one of {', '.join(DEFAULT_MODELS)}")
    return load_choreographer(ASSETS / DEFAULT_MODELS[name], threads, device, seed)


# --- choreographers ----------------------------------------------------------------------------------------------

class ModelChoreographer:
    """The Choreographer interface (`fps`, `slice_frames`, `next_slice`, `reset`, `set_quality`) around a model's
    numpy sampler. Subclasses produce raw motion rows (`next_rows`); this class applies the energy control and
    decodes the rows into Motions that continue one another (root position and heading carried across slices)."""

    fps = FEATURE_FPS
    ENERGY_SECONDS = 1.0  # time constant of the running mean pose the energy control scales motion around

    def __init__(self, slice_frames, seed=None):
        self.slice_frames = slice_frames
        self.seed = seed  # None: every reset starts a different dance
        self.reset()

    def reset(self):
        self._root = None
        self._mean_row = None
        self.restart()

    def set_quality(self, level):
        """Do `level` (0..1] of the model's full work per slice; the live engine lowers it when it falls behind."""

    def next_slice(self, music, energy=1.0, key_pose=None):
        """The Motion of the next `slice_frames` frames for `music` (slice_frames rows, or more: the rows after the
        slice are used as lookahead where the model has one). `key_pose`: a name of `groove.KEY_POSES`, struck on
        the slice's downbeat by the models that take key poses."""
        music = np.asarray(music, dtype=np.float32)
        if music.ndim != 2 or music.shape[1] != FEATURE_DIM or len(music) < self.slice_frames:
            raise OnbeatError(f"music for a slice must have shape (>= {self.slice_frames}, {FEATURE_DIM}), got "
                              f"{music.shape}")
        rows = self._with_energy(self.next_rows(music, key_pose), energy)
        motion = decode(rows, self.fps, self._root)
        self._root = root_state(motion)
        return motion

    def _with_energy(self, rows, energy):
        """energy 1 leaves the dance as the model made it; below 1 calms it (height and joint rotations drawn
        towards the running mean pose, root speed scaled), above 1 exaggerates it. The model's state is untouched."""
        alpha = 1.0 - np.exp(-1.0 / (self.ENERGY_SECONDS * self.fps))
        means = np.empty_like(rows)
        for i, row in enumerate(rows):
            self._mean_row = row.copy() if self._mean_row is None else self._mean_row + alpha * (row - self._mean_row)
            means[i] = self._mean_row
        energy = float(np.clip(energy, 0.0, 2.0))
        if energy == 1.0:
            return rows
        out = rows.copy()
        out[:, :2] *= energy  # ground velocity
        pose = slice(2, ROTATION_SLICE.stop)  # height and joint rotations
        out[:, pose] = means[:, pose] + energy * (rows[:, pose] - means[:, pose])
        return out


def key_pose_row(name, base_row):
    """`base_row` (raw) with the joints of the named key pose (`groove.KEY_POSES`) set to its rotations."""
    row = np.array(base_row, dtype=np.float32)
    six_d = row[ROTATION_SLICE].reshape(NUM_JOINTS, 6)
    for joint, (axis, degrees) in KEY_POSES[name].items():
        six_d[JOINT_INDEX[joint]] = R.quat_to_6d(R.quat_from_axis_angle(np.radians(degrees) * axis))
    row[ROTATION_SLICE] = six_d.reshape(-1)
    return row


class BadmChoreographer(ModelChoreographer):
    """BADM's sliced lockstep diffusion (`onbeat.choreographers.badm_sampler`) around a `denoise` callable; degrades by
    taking fewer DDIM steps."""

    def __init__(self, denoise, metadata, seed=None):
        self.denoise = denoise
        self.full_steps = self.steps = int(metadata["ddim_steps"])
        self.pose_mean = np.asarray(metadata["pose_mean"], np.float32)
        self.pose_std = np.asarray(metadata["pose_std"], np.float32)
        super().__init__(int(metadata["slice_frames"]), seed)

    def restart(self):
        self.state = badm_sampler.StreamState.start(self.slice_frames, len(self.pose_mean), self.seed)

    def set_quality(self, level):
        self.steps = max(1, round(self.full_steps * level))

    def next_rows(self, music, key_pose=None):
        frames = self.slice_frames
        # The sampler looks one slice ahead; without given lookahead rows the last row is held.
        lookahead = music[frames:2 * frames]
        music = np.concatenate([music[:frames], lookahead, np.repeat(music[-1:], frames - len(lookahead), 0)])
        key, mask = self._key_inputs(key_pose, music[:frames])
        clean = badm_sampler.sample_slice(self.denoise, self.state, music, self.steps, key, mask)
        return clean * self.pose_std + self.pose_mean

    def _key_inputs(self, name, music):
        """(key_pose (S, D) normalized, key_mask (S,)) asking for the named pose on the slice's downbeat."""
        if name not in KEY_POSES:
            return None, None
        previous = self.state.context[-1] * self.pose_std + self.pose_mean  # the pose the dance is in now
        frame = downbeat_frame(music)
        key = np.zeros_like(self.state.context)
        key[frame] = (key_pose_row(name, previous) - self.pose_mean) / self.pose_std
        mask = np.zeros(len(key), np.float32)
        mask[frame] = 1.0
        return key, mask


class CodesChoreographer(ModelChoreographer):
    """Bailando-style codes + GPT (`onbeat.choreographers.codes_sampler`) around `gpt_step` and `decode` callables. Every
    code step costs the same, so there is nothing to degrade."""

    def __init__(self, gpt_step, decode, metadata, seed=None):
        self.stream = codes_sampler.CodesStream(gpt_step, decode, metadata, seed)
        super().__init__(self.stream.slice_frames, seed)

    def restart(self):
        self.stream.reset(self.seed)

    def next_rows(self, music, key_pose=None):  # the GPT has no key-pose input
        return self.stream.next_slice(music[:self.slice_frames])


def load_choreographers(model):
    """{name: Choreographer} for `--model`; empty means the groove alone."""
    if model == "groove":
        return {}
    try:
        import onnxruntime  # noqa: F401 - only to say clearly when it is missing
    except ImportError:
        if model != "default":
            raise OnbeatError(f"--model {model}: onnxruntime is not installed (pip install onbeat[cpu])") from None
        logger.warning("onnxruntime is not installed; dancing with the built-in groove")
        return {}
    if model == "default":
        try:
            return {"default": load_default_choreographer()}
        except OnbeatError as e:
            logger.warning("no default model (%s); dancing with the built-in groove", e)
            return {}
    if model in DEFAULT_MODELS:
        return {model: load_default_choreographer(model)}
    if not model.endswith(".onnx"):
        raise OnbeatError(f"--model {model}: choose default, groove, {', '.join(DEFAULT_MODELS)} or an "
                          f".onnx path")
    # The runtime resolves paths (a codes model `x.onnx` is the pair x.gpt.onnx + x.decoder.onnx) and names
    # a missing file.
    return {Path(model).stem: load_choreographer(model)}
