"""Streaming sampling of the codes choreographer, in numpy: the one loop both torch generation and the ONNX runtime
use (they differ only in the two callables they pass; see `onbeat.models.codes` for the graphs):

    gpt_step(prev_up (1,) int64, prev_down (1,) int64, music (1, rate, F) float32, kv float32, pos (1,) int64)
        -> (logits_up (1, K), logits_down (1, K), kv)
    decode(codes_up (1, W) int64, codes_down (1, W) int64) -> (1, slice_frames, POSE_DIM) raw rows
        of the last `slice_codes` codes (W = `decode_window` codes: those plus the decoder's context)

Each slice turns `slice_frames` = slice_codes x rate music rows (raw features, all zeros = no music) into as many
motion rows: one GPT step per code, then one decoder call. Codes are drawn with
temperature and top-k, and a loop guard lowers the logit of every code by `repeat_penalty` per time it was drawn in
the last `repeat_window` steps, so the dance neither loops on a few codes nor freezes on one. The decoded rows go
through a causal one-pole low-pass (`smoothing` = the share of the previous output kept; 0 = off): the decoder's
frame-to-frame jitter halves (measured jerk) at the cost of about one frame of lag.
"""
import numpy as np

from onbeat.choreographers.conditioning import for_batch

MUSIC_INPUT = 2  # position of `music` among gpt_step's inputs (styled graphs: see `onbeat.choreographers.conditioning`)
SAMPLING_KEYS = ("temperature", "top_k", "repeat_window", "repeat_penalty", "smoothing")  # metadata()["sampling"]


def sample_code(logits, rng, temperature=1.0, top_k=0, recent=(), repeat_penalty=0.0):
    """One code index from (K,) logits."""
    logits = np.asarray(logits, dtype=np.float64)
    if repeat_penalty and len(recent):
        logits = logits - repeat_penalty * np.bincount(np.asarray(recent), minlength=len(logits))
    logits = logits / max(temperature, 1e-6)
    if 0 < top_k < len(logits):
        cutoff = np.partition(logits, -top_k)[-top_k]
        logits = np.where(logits >= cutoff, logits, -np.inf)
    probabilities = np.exp(logits - logits.max())
    return int(rng.choice(len(probabilities), p=probabilities / probabilities.sum()))


class CodesStream:
    """One dance in progress: the KV cache, the step number and the codes drawn so far (as many as needed)."""

    def __init__(self, gpt_step, decode, metadata, seed=None, **sampling):
        self.gpt_step, self.decode = gpt_step, decode
        self.meta = metadata
        self.rate, self.slice_frames = int(metadata["rate"]), int(metadata["slice_frames"])
        settings = {**metadata["sampling"], **{k: v for k, v in sampling.items() if v is not None}}
        unknown = set(settings) - set(SAMPLING_KEYS)
        if unknown:
            raise TypeError(f"unknown sampling settings: {', '.join(sorted(unknown))}")
        self.sampling = settings
        self.reset(seed)

    def reset(self, seed=None):
        m = self.meta
        self.kv = np.zeros((m["layers"], 2, 1, m["heads"], m["context"], m["head_dim"]), np.float32)
        self.pos = 0
        self.codes: dict[str, list[np.ndarray]] = {"up": [], "down": []}
        self.previous_row = None  # the low-pass filter's state
        self.rng = np.random.default_rng(seed)

    def next_slice(self, music):
        """(slice_frames, F) raw music rows -> (slice_frames, POSE_DIM) raw motion rows."""
        music = np.asarray(music, np.float32)
        if music.shape != (self.slice_frames, music.shape[-1]):
            raise ValueError(f"music must have {self.slice_frames} rows, got {music.shape}")
        return next_slices([self], music)[0]

    def _low_pass(self, rows):
        keep = float(self.sampling.get("smoothing", 0.0))
        out = np.empty_like(rows)
        previous = rows[0] if self.previous_row is None else self.previous_row
        for t, row in enumerate(rows):
            previous = out[t] = keep * previous + (1 - keep) * row
        self.previous_row = previous
        return out

    def _previous(self, half):
        return self.codes[half][-1] if self.codes[half] else self.meta["start_token"]

    def _take(self, logits_up, logits_down):
        """Draw the next upper and lower codes from one GPT step's (K,) logits."""
        window, penalty = int(self.sampling["repeat_window"]), self.sampling["repeat_penalty"]
        for half, logits in (("up", logits_up), ("down", logits_down)):
            drawn = self.codes[half]
            drawn.append(sample_code(logits, self.rng, self.sampling["temperature"], int(self.sampling["top_k"]),
                                     drawn[-window:] if window > 0 else (), penalty))
            del drawn[:-max(window, self.meta["decode_window"])]

    def _decoder_window(self, half):
        """(1, W) the last W codes; at a stream's start the first code is repeated to fill the window."""
        recent = self.codes[half][-self.meta["decode_window"]:]
        padded = [recent[0]] * (self.meta["decode_window"] - len(recent)) + recent
        return np.array([padded], np.int64)

    def next_rows(self, music):
        """(n * slice_frames, F) raw music rows -> as many raw motion rows."""
        size = self.slice_frames
        if len(music) % size:
            raise ValueError(f"music rows must be a multiple of {size}, got {len(music)}")
        return np.concatenate([self.next_slice(music[i:i + size]) for i in range(0, len(music), size)])


def next_slices(streams, music):
    """`next_slice` of several streams of one model at once (a crowd), one batched graph call per GPT step and one
    decoder call: the graphs' dynamic batch (the cache's batch on axis 2, the step number shared, so the streams
    must be at the same step). `streams[0]`'s callables are used, with the others' style ids where they take one."""
    lead = streams[0]
    if any(stream.pos != lead.pos for stream in streams):
        raise ValueError("streams at different steps cannot share a batched step")
    gpt_step = for_batch([stream.gpt_step for stream in streams])
    music = np.asarray(music, np.float32)
    for code_step in range(0, lead.slice_frames, lead.rate):
        chunk = np.repeat(music[None, code_step:code_step + lead.rate], len(streams), 0)
        previous = [np.array([stream._previous(half) for stream in streams], np.int64) for half in ("up", "down")]
        kv = np.concatenate([stream.kv for stream in streams], axis=2)
        logits_up, logits_down, kv = gpt_step(*previous, chunk, kv, np.array([lead.pos], np.int64))
        for b, stream in enumerate(streams):
            stream.kv, stream.pos = kv[:, :, b:b + 1], stream.pos + 1
            stream._take(logits_up[b], logits_down[b])
    windows = [np.concatenate([stream._decoder_window(half) for stream in streams]) for half in ("up", "down")]
    return [stream._low_pass(rows) for stream, rows in zip(streams, lead.decode(*windows), strict=True)]


def generate(gpt_step, decode, metadata, music, seed=0, **sampling):
    """(T', POSE_DIM) raw rows for (T, F) raw music rows; T' = T rounded down to whole slices."""
    stream = CodesStream(gpt_step, decode, metadata, seed, **sampling)
    usable = len(music) // stream.slice_frames * stream.slice_frames
    return stream.next_rows(np.asarray(music)[:usable])
