"""Inputs built from their formats' grammars, for fuzzing: OSC packets, WAV and FLAC files, ONNX metadata.

Random bytes almost never make a `#bundle` header, a RIFF chunk list or a STREAMINFO block, so a byte-level
fuzzer never reaches the code that reads them. These generators build the structure and then bend it where
readers break: element and chunk sizes negative, zero, huge or off by a few; nesting past the limits; time tags
in the past, now, soon and far ahead; every OSC type tag and some unknown ones; strings without their NUL or
padding; sample rates, channel counts and bit depths from 0 to 2^32 - 1; JSON values of the wrong type,
out of bounds, NaN, or nested thousands deep; and truncation, junk and flipped bytes on top.

Every decision is drawn from a `Choices`, so one grammar serves three drivers: hypothesis (the CI tests:
derandomized, and failures shrink to small examples), atheris (`onbeat bench fuzz`: libFuzzer's coverage-guided
mutations of the decision bytes become structural changes) and `random` (the attacker of `bench soak --attack`).
"""
import io
import json
import math
import random
import struct
from functools import lru_cache
from typing import Callable, Protocol, Sequence, TypeVar

import numpy as np

from onbeat.choreographers.kinds import KINDS
from onbeat.choreographers.onnx import Integer, Number, Numbers, metadata_props
from onbeat.stream.control import BUNDLE_TAG, IMMEDIATELY, unix_to_time_tag

T = TypeVar("T")


class Choices(Protocol):
    """Where a grammar's decisions come from."""

    def integer(self, low: int, high: int) -> int: ...  # low..high inclusive

    def raw(self, size: int) -> bytes: ...  # `size` bytes of anything


class RandomChoices:
    def __init__(self, seed: int | None = None):
        self.rng = random.Random(seed)

    def integer(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)

    def raw(self, size: int) -> bytes:
        return self.rng.randbytes(size)


class ProviderChoices:
    """Decisions read from fuzzer bytes through an `atheris.FuzzedDataProvider` (zeros once they run out)."""

    def __init__(self, provider):
        self.provider = provider

    def integer(self, low: int, high: int) -> int:
        return self.provider.ConsumeIntInRange(low, high)

    def raw(self, size: int) -> bytes:
        return self.provider.ConsumeBytes(size).ljust(size, b"\0")


class DrawChoices:
    """Decisions drawn by a hypothesis `draw` (see `strategy`)."""

    def __init__(self, draw):
        from hypothesis import strategies as st
        self.draw, self.st = draw, st

    def integer(self, low: int, high: int) -> int:
        return self.draw(self.st.integers(low, high))

    def raw(self, size: int) -> bytes:
        return self.draw(self.st.binary(min_size=size, max_size=size))


def strategy(generator: Callable[[Choices], T]):
    """A hypothesis strategy of `generator(choices)`."""
    from hypothesis import strategies as st
    return st.composite(lambda draw: generator(DrawChoices(draw)))()


def pick(c: Choices, options: Sequence[T]) -> T:
    return options[c.integer(0, len(options) - 1)]


def one_in(c: Choices, n: int) -> bool:
    return c.integer(0, n - 1) == 0


def damaged(c: Choices, data: bytes) -> bytes:
    """`data`, or (1 in 4) cut short, with junk after it, or with one byte flipped."""
    how = c.integer(0, 11)
    if how == 0 and data:
        return data[:c.integer(0, len(data) - 1)]
    if how == 1:
        return data + c.raw(c.integer(1, 8))
    if how == 2 and data:
        at = c.integer(0, len(data) - 1)
        return data[:at] + bytes([data[at] ^ c.integer(1, 255)]) + data[at + 1:]
    return data


def size_field(c: Choices, true_size: int, low: int, high: int) -> int:
    """A size to write in a header: mostly the true one, else zero, off by a few, a limit, or anything."""
    how = c.integer(0, 9)
    if how < 6:
        return min(high, max(low, true_size))  # a field too narrow for the truth holds its largest value
    if how == 6:
        return pick(c, (0, low, high, low + 1, high - 1))
    if how == 7:
        return min(high, max(low, true_size + pick(c, (-8, -4, -1, 1, 4, 8))))
    return c.integer(low, high)


# --- OSC ----------------------------------------------------------------------------------------------------------

OSC_ADDRESSES = ("/onbeat/energy", "/onbeat/model", "/onbeat/hold", "/onbeat/keypose", "/onbeat/mirror",
                 "/onbeat/style", "/onbeat", "/x", "/", "", "no/slash", "/" + "a" * 300)
OSC_TYPE_TAGS = "ifsbhdtcrmSTFNI[]"  # every tag of OSC 1.0 and 1.1
UNKNOWN_TYPE_TAGS = "xZ?\x7f ,"
OSC_STRINGS = ("default", "groove", "badm", "codes", "arms_up", "t_pose", "point", "crouch", "waltz", "hip-hop",
               "", "Arms_Up", "é", "\x1b[31mred\x1b[0m", "\x1b]0;title\x07", "x" * 300)
OSC_INTS = (0, 1, -1, 2, 255, 2 ** 31 - 1, -2 ** 31)
OSC_FLOATS = (0.0, 0.25, 1.0, 1.5, 2.0, 2.0000002, -0.0, -1.0, 1e30, math.nan, math.inf, -math.inf)
MAX_NESTING = 6  # deeper than the control input accepts


def osc_packet(c: Choices, now: float = 0.0, depth: int = 0) -> bytes:
    """An OSC datagram: a message or a bundle (of messages and bundles, `now` being the wall clock for time tags)."""
    if depth < MAX_NESTING and one_in(c, 3):
        return damaged(c, _osc_bundle(c, now, depth))
    return damaged(c, _osc_message(c))


def flood_packet(c: Choices, now: float) -> bytes:
    """What `bench soak --attack` sends: grammar packets, and (1 in 8) a bundle of many of them of up to 60 kB
    (the bundle floods that once dropped output frames)."""
    if not one_in(c, 8):
        return osc_packet(c, now)
    data, limit = BUNDLE_TAG + struct.pack(">Q", _osc_time_tag(c, now)), pick(c, (7600, 60000))
    while len(data) < limit:
        content = _osc_message(c)
        data += struct.pack(">i", size_field(c, len(content), -2 ** 31, 2 ** 31 - 1)) + content
    return data


def _osc_string(c: Choices, text: str) -> bytes:
    data = text.encode("utf-8") + b"\0"
    how = c.integer(0, 15)
    if how == 0:
        return data[:-1]  # no NUL
    if how == 1:
        return data + c.raw(-len(data) % 4 or 4)  # padding that is not NULs (or too much of it)
    return data + b"\0" * (-len(data) % 4)


def _osc_message(c: Choices) -> bytes:
    address = _osc_string(c, pick(c, OSC_ADDRESSES))
    how = c.integer(0, 19)
    if how == 0:
        return address  # OSC 1.0: no type tag string at all
    tags = "".join(pick(c, UNKNOWN_TYPE_TAGS if one_in(c, 12) else OSC_TYPE_TAGS) for _ in range(c.integer(0, 4)))
    if one_in(c, 6):
        tags = "[" * c.integer(1, 8) + tags + "]" * c.integer(0, 8)  # arrays, nested, balanced or not
    type_tags = _osc_string(c, ("" if how == 1 else ",") + tags)
    return address + type_tags + b"".join(_osc_argument(c, tag) for tag in tags)


def _osc_argument(c: Choices, tag: str) -> bytes:
    if tag == "i":
        return struct.pack(">i", pick(c, OSC_INTS) if c.integer(0, 3) else c.integer(-2 ** 31, 2 ** 31 - 1))
    if tag == "f":
        return struct.pack(">f", pick(c, OSC_FLOATS))
    if tag == "d":
        return struct.pack(">d", pick(c, OSC_FLOATS))
    if tag in "ht":
        return struct.pack(">q" if tag == "h" else ">Q", c.integer(0, 2 ** 63 - 1))
    if tag in "crm":
        return c.raw(4)
    if tag in "sS":
        return _osc_string(c, pick(c, OSC_STRINGS))
    if tag == "b":
        data = c.raw(c.integer(0, 12))
        size = size_field(c, len(data), -2 ** 31, 2 ** 31 - 1)
        return struct.pack(">i", size) + data + b"\0" * (-len(data) % 4)
    return b""  # T F N I [ ] carry no data (and unknown tags nothing we know of)


def _osc_time_tag(c: Choices, now: float) -> int:
    when = c.integer(0, 7)
    if when == 0:
        return IMMEDIATELY
    if when == 1:
        return pick(c, (0, 2 ** 64 - 1, c.integer(0, 2 ** 64 - 1)))
    ahead = (-10.0, 0.0, c.integer(1, 500) / 1000, c.integer(1, 3000) / 1000, 30.0, 59.0, 61.0, 86400.0)[when]
    return unix_to_time_tag(now + ahead)


def _osc_bundle(c: Choices, now: float, depth: int) -> bytes:
    header = pick(c, (BUNDLE_TAG,) * 14 + (b"#bundle", b"#bundlX\0"))
    data = header + struct.pack(">Q", _osc_time_tag(c, now))
    for _ in range(c.integer(0, 5)):
        content = osc_packet(c, now, depth + 1)
        data += struct.pack(">i", size_field(c, len(content), -2 ** 31, 2 ** 31 - 1)) + content
    return data


# --- WAV and FLAC -------------------------------------------------------------------------------------------------

SAMPLE_RATES = (8000, 22050, 44100, 48000, 96000, 192000, 768000, 0, 1, 999, 1000, 768001, 2 ** 31 - 1, 2 ** 32 - 1)
CHANNELS = (1, 2, 6, 8, 0, 1024, 1025, 65535)
BITS = (8, 16, 24, 32, 64, 0, 1, 7, 12, 65535)
WAV_FORMATS = (1, 1, 3, 0xFFFE, 6, 7, 2, 0, 0x55, 65535)  # PCM, float, extensible, A-law, mu-law, ADPCM, ...
_GUID_TAIL = bytes.fromhex("000000001000800000aa00389b71")


def _chunk(c: Choices, name: bytes, body: bytes) -> bytes:
    size = size_field(c, len(body), 0, 2 ** 32 - 1)
    return name + struct.pack("<I", size) + body + b"\0" * (len(body) % 2)


def wav_file(c: Choices) -> bytes:
    """A RIFF/WAVE file: a `fmt ` chunk of any format, rate, channel count and bit depth, other chunks, data."""
    rate = pick(c, SAMPLE_RATES) if c.integer(0, 3) else c.integer(0, 2 ** 32 - 1)
    channels, bits, tag = pick(c, CHANNELS), pick(c, BITS), pick(c, WAV_FORMATS)
    align = size_field(c, channels * bits // 8, 0, 65535)
    fmt = struct.pack("<HHIIHH", tag, channels, rate, size_field(c, rate * align % 2 ** 32, 0, 2 ** 32 - 1),
                      align, bits)
    if tag == 0xFFFE or one_in(c, 8):  # WAVE_FORMAT_EXTENSIBLE: valid bits, channel mask, sub-format GUID
        fmt += struct.pack("<HHI", size_field(c, 22, 0, 65535), bits, c.integer(0, 2 ** 32 - 1))
        fmt += struct.pack("<H", pick(c, (1, 3, 0, 65535))) + _GUID_TAIL
    frames = c.integer(0, 64)
    chunks = [_chunk(c, b"fmt ", fmt), _chunk(c, b"data", c.raw(min(frames * max(align, 1), 4096)))]
    for _ in range(c.integer(0, 2)):  # LIST, fact, or a chunk nobody knows, before the data
        chunks.insert(1, _chunk(c, pick(c, (b"LIST", b"fact", b"junk", c.raw(4))), c.raw(c.integer(0, 16))))
    if one_in(c, 8):
        chunks.reverse()  # data before fmt
    body = pick(c, (b"WAVE",) * 6 + (b"WAVX",)) + b"".join(chunks)
    riff = pick(c, (b"RIFF",) * 6 + (b"RIFX", b"RF64"))
    return damaged(c, riff + struct.pack("<I", size_field(c, len(body), 0, 2 ** 32 - 1)) + body)


@lru_cache(maxsize=1)
def _flac_frames() -> bytes:
    """The audio frames of a small real FLAC file (mono, 16 bit, 44.1 kHz, 0.1 s of a tone), after its metadata."""
    import soundfile
    buffer = io.BytesIO()
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(4410) / 44100)
    soundfile.write(buffer, tone, 44100, format="FLAC", subtype="PCM_16")
    data, index = buffer.getvalue(), 4
    while True:  # skip the metadata blocks: (last flag, type) byte and a 24-bit length each
        last, length = data[index] & 0x80, int.from_bytes(data[index + 1:index + 4], "big")
        index += 4 + length
        if last:
            return data[index:]


def _flac_block(c: Choices, kind: int, body: bytes, last: bool) -> bytes:
    length = size_field(c, len(body), 0, 2 ** 24 - 1)
    return bytes([(0x80 if last else 0) | kind]) + length.to_bytes(3, "big") + body


def flac_file(c: Choices) -> bytes:
    """A FLAC file: STREAMINFO with any block sizes, rate (20 bits), channels, bit depth and length; other
    metadata blocks of any length; then real audio frames (which may not match what STREAMINFO says)."""
    rates = (44100, 48000, 8000, 0, 1, 999, 768000, 2 ** 20 - 1)
    rate = pick(c, rates) if c.integer(0, 3) else c.integer(0, 2 ** 20 - 1)
    block_sizes = (pick(c, (4096, 16, 0, 65535)), pick(c, (4096, 16, 0, 65535)))  # min, max
    info = struct.pack(">HH", *block_sizes) + c.integer(0, 2 ** 24 - 1).to_bytes(3, "big") * 2
    channels, bits = pick(c, (1, 2, 8, c.integer(1, 8))), pick(c, (16, 24, 8, 4, 32, c.integer(1, 32)))
    total = pick(c, (4410, 0, 2 ** 36 - 1, c.integer(0, 2 ** 36 - 1)))
    packed = rate << 44 | (channels - 1) << 41 | (bits - 1) << 36 | total
    info += packed.to_bytes(8, "big") + c.raw(16)  # + the MD5 of the audio
    extra = [(pick(c, (1, 3, 4, 6, 127)), c.raw(c.integer(0, 40))) for _ in range(c.integer(0, 2))]
    blocks = [(0, info)] + extra
    metadata = b"".join(_flac_block(c, kind, body, i == len(blocks) - 1) for i, (kind, body) in enumerate(blocks))
    audio = _flac_frames() if c.integer(0, 3) else c.raw(c.integer(0, 64))
    return damaged(c, pick(c, (b"fLaC",) * 8 + (b"fLaX",)) + metadata + audio)


# --- ONNX metadata ------------------------------------------------------------------------------------------------

def _valid_value(c: Choices, spec):
    if isinstance(spec, Integer):
        return pick(c, (spec.low, spec.high, min(spec.high, spec.low + 7), c.integer(spec.low, min(spec.high, 64))))
    if isinstance(spec, Number):
        low = spec.low + (1e-3 if spec.above_low else 0.0)
        return pick(c, (low, spec.high, (low + spec.high) / 2, 1.0 if low <= 1.0 <= spec.high else low))
    if isinstance(spec, Numbers):
        return [_valid_value(c, spec.each)] * spec.length
    return {key: _valid_value(c, each) for key, each in spec.keys.items()}


def _bad_value(c: Choices, spec):
    """A value of the wrong type, out of bounds, NaN or infinite, or absurdly large."""
    if isinstance(spec, (Integer, Number)):
        low, high = spec.low, spec.high
        return pick(c, (low - 1, high + 1, -2 ** 63, 2 ** 64, 10 ** 30, math.nan, math.inf, -math.inf, 0.5, True,
                        None, "8", [8], {}))
    if isinstance(spec, Numbers):
        good = [_valid_value(c, spec.each)] * spec.length
        return pick(c, (good[:-1], good + good[:1], [], "x", [math.nan] * spec.length, [None] * spec.length,
                        [[0.0]] * spec.length, list(range(100_000))))
    good = _valid_value(c, spec)
    key = pick(c, sorted(good))
    return pick(c, ({k: v for k, v in good.items() if k != key}, {**good, "unknown": 1},
                    {**good, key: _bad_value(c, spec.keys[key])}, [], "table"))


def onnx_metadata(c: Choices) -> tuple[str, dict]:
    """(model kind, the string → string metadata map of an exported file of that kind): valid values from the
    kind's own `MetadataSchema`, some of them missing, out of bounds, of the wrong type, or not JSON; and the
    plain keys (format version, kind, layouts) now and then missing or wrong."""
    kind = KINDS[pick(c, sorted(name for name, kind in KINDS.items() if kind.metadata))]
    schema = kind.metadata_schema()
    assert schema is not None  # a kind with metadata has a schema
    specs = schema.values
    values = {key: _valid_value(c, spec) for key, spec in specs.items()}
    props = metadata_props(kind.name, kind.graphs[0], values, "0" * 64)
    for key in sorted(set(props) - set(specs)):
        how = c.integer(0, 23)
        if how == 0:
            del props[key]
        elif how == 1:
            props[key] = pick(c, ("", "0", "2", "codes", "badm", "step", ",", "x" * 1000))
    for key, spec in specs.items():
        how = c.integer(0, 15)
        if how == 0:
            del props[key]
        elif how == 1:
            props[key] = json.dumps(_bad_value(c, spec))
        elif how == 2:
            props[key] = pick(c, ("", "{", "[1,", "NaN", "Infinity", "nul", "\x00", "[" * 100_000 + "]" * 100_000,
                                  "1" * 5000))
    return kind.name, props
