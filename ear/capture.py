"""The capture process behind `DeviceSource`: PortAudio runs here, not in the show's process.

Why a process: when a JACK server dies under a running stream, PortAudio cannot be closed, terminated or
re-initialised in that process (each call blocks for good), so in-process capture could never reconnect and
would hang the exit. Here the parent simply kills this process (SIGKILL cannot hang) and starts a fresh one,
whose PortAudio sees the devices as they are now.

    python -m onbeat.ear.capture DEVICE RATE CHANNELS BLOCK
DEVICE is "" (the default), an index or a name substring; RATE 0 takes the device's default. Writes to stdout
one JSON line, either {"device_name", "sample_rate", "channels", "message"} or {"error"}, then chunks of
(int32 frames, int32 1 if PortAudio flagged an xrun else 0, float32 samples (frames, channels)) in native byte order.
It exits (without PortAudio's exit handler, which may block) when the stream stops delivering, when stdout is
closed, or when its parent is gone.
"""
import json
import os
import queue
import signal
import struct
import sys

from onbeat.core.errors import OnbeatError
from onbeat.ear.devices import find_device, import_sounddevice

CHUNK_HEADER = struct.Struct("=ii")
STALL_S = 2.0  # a started stream that delivers nothing for this long is dead (unplugged, server gone)


def _device_settings(sd, device, rate, channels):
    """(index, name, rate, channels, warning) for the request, as `DeviceSource` documents it."""
    index = find_device(sd, device or None, "input")
    info = sd.query_devices(index)
    channels = max(1, min(channels, int(info["max_input_channels"])))
    default, message = int(info["default_samplerate"]), ""
    if rate:
        try:
            sd.check_input_settings(index, samplerate=rate, channels=channels)
        except Exception:  # noqa: BLE001 - PortAudio errors are untyped
            message = f"{info['name']}: {rate} Hz not supported, using its default {default} Hz"
            rate = default
    return index, info["name"], rate or default, channels, message


def main(device, rate, channels, block):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the show's process, which then closes this one
    out = sys.stdout.buffer
    parent = os.getppid()
    chunks: queue.SimpleQueue[bytes] = queue.SimpleQueue()
    try:
        sd = import_sounddevice()
        index, name, rate, channels, message = _device_settings(sd, device, int(rate), int(channels))
        stream = sd.InputStream(device=index, samplerate=rate, channels=channels, dtype="float32",
                                blocksize=int(block), callback=lambda data, frames, t, status: chunks.put(
                                    CHUNK_HEADER.pack(frames, int(bool(status))) + data.tobytes()))
        stream.start()
        header = {"device_name": name, "sample_rate": rate, "channels": channels, "message": message}
    except OnbeatError as e:
        header = {"error": str(e)}
    except Exception as e:  # noqa: BLE001 - PortAudio errors are untyped
        header = {"error": f"cannot open audio input '{device or 'default'}': {e}"}
    try:
        out.write(json.dumps(header).encode() + b"\n")
        out.flush()
        while "error" not in header and os.getppid() == parent:
            try:
                chunk = chunks.get(timeout=STALL_S)
            except queue.Empty:
                break  # the device or the server is gone
            out.write(chunk)
            out.flush()
    except (BrokenPipeError, OSError):
        pass  # the parent closed the pipe: it wants no more
    os._exit(0)  # skip PortAudio's exit handler: it blocks on a dead JACK server


if __name__ == "__main__":
    main(*sys.argv[1:])
