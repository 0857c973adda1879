"""Sound devices through PortAudio (sounddevice): finding one by index or name, listing them for messages.

Kept apart from `sources` so the capture process imports only this, not the whole ear."""
from onbeat.core.errors import OnbeatError


def import_sounddevice():
    """sounddevice, or a clear error when the PortAudio library is missing (it raises OSError on import)."""
    try:
        import sounddevice
    except OSError:
        raise OnbeatError("PortAudio library not found (install libportaudio2)") from None
    return sounddevice


def describe_devices(sd, kind="input"):
    """'0: name (API, 2 ch), ...' for the devices with `kind` channels, for error messages."""
    key = f"max_{kind}_channels"
    apis = sd.query_hostapis()
    found = [f"{i}: {d['name']} ({apis[d['hostapi']]['name']}, {d[key]} ch)"
             for i, d in enumerate(sd.query_devices()) if d[key] > 0]
    return "; ".join(found) if found else "none"


def find_device(sd, device, kind="input"):
    """Device index for None (the default), an index, or a case-insensitive substring of "name (host API)"."""
    key = f"max_{kind}_channels"
    devices = sd.query_devices()
    available = f"available {kind} devices: {describe_devices(sd, kind)}"
    if device is None:
        default = sd.default.device[0 if kind == "input" else 1]
        if default is None or default < 0:  # PortAudio has no default: take the first device that fits
            default = next((i for i, d in enumerate(devices) if d[key] > 0), -1)
        if default < 0:
            raise OnbeatError(f"no audio {kind} device found; {available}")
        return default
    if isinstance(device, str) and device.strip().lstrip("-").isdigit():
        device = int(device)
    if isinstance(device, int):
        if 0 <= device < len(devices) and devices[device][key] > 0:
            return device
        raise OnbeatError(f"audio device {device} is not an {kind} device; {available}")
    apis = sd.query_hostapis()   # the name may also pick a host API: "JACK" finds the JACK server's ports
    matches = [i for i, d in enumerate(devices)
               if device.lower() in f"{d['name']} ({apis[d['hostapi']]['name']})".lower() and d[key] > 0]
    if not matches:
        raise OnbeatError(f"no audio {kind} device matches '{device}'; {available}")
    return matches[0]


def open_output(sample_rate, channels, device=None, latency=None):
    """A started PortAudio output stream on `device` (None: the default), or OnbeatError saying in plain words
    why this machine cannot play sound. blocksize stays the host's own: PortAudio's JACK backend corrupts
    memory on blocking writes with another size."""
    sd = import_sounddevice()
    index = find_device(sd, device, "output")
    try:
        stream = sd.OutputStream(device=index, samplerate=sample_rate, channels=channels, dtype="float32",
                                 latency=latency)
        stream.start()
    except Exception as e:  # noqa: BLE001 - PortAudio errors are untyped
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise OnbeatError(f"cannot open the output device ({reason})") from None
    return stream
