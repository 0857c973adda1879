"""`onbeat info`: what this installation has to work with (versions, ONNX providers, sound devices, data, models).

Reads package versions from their metadata rather than importing them, so it never pays for (or needs) torch.
"""
import platform
import shutil
from importlib import metadata

from onbeat.core import paths

PACKAGES = ("numpy", "onnxruntime", "onnxruntime-gpu", "torch", "sounddevice")


def version_of(distribution):
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def onnx_providers():
    installed = [d for d in ("onnxruntime", "onnxruntime-gpu") if version_of(d) != "not installed"]
    if not installed:
        return "onnxruntime not installed (pip install 'onbeat[cpu]' or 'onbeat[gpu]')"
    import onnxruntime
    note = " (both installed: they overwrite each other, uninstall one)" if len(installed) == 2 else ""
    return f"{', '.join(onnxruntime.get_available_providers())} [from {' + '.join(installed)}]{note}"


def audio_devices():
    """One line per sound device, or a line saying why there are none."""
    try:
        import sounddevice
    except OSError:
        return ["PortAudio library not found: install libportaudio2 (e.g. apt install libportaudio2)"]
    try:
        devices = sounddevice.query_devices()
        default_in, default_out = sounddevice.default.device
    except sounddevice.PortAudioError as e:
        return [f"cannot list audio devices ({e})"]
    if len(devices) == 0:
        return ["no audio devices found"]
    lines = []
    for index, device in enumerate(devices):
        marks = [m for m, default in (("default input", default_in), ("default output", default_out))
                 if index == default]
        lines.append(f"{index}: {device['name']} ({device['max_input_channels']} in, "
                     f"{device['max_output_channels']} out, {device['default_samplerate']:g} Hz)"
                     f"{' [' + ', '.join(marks) + ']' if marks else ''}")
    return lines


# Programs onbeat uses when they are there, and what each one gives.
PROGRAMS = {"ffmpeg": "video for `onbeat render`, audio formats libsndfile cannot read",
            "jackd": "JACK audio server (pro audio devices; the capture tests)",
            "chromium": "headless browser for the stage's browser tests"}


def programs():
    """One line per optional program: where it is, or what is missing without it."""
    return [f"{name}: {shutil.which(name) or 'not found'} ({use})" for name, use in PROGRAMS.items()]


def data_location():
    from onbeat.core.paths import data_root
    root = data_root()
    return str(root) if root else "not found (set ONBEAT_DATA)"


def default_models():
    """The models by the names `--model` takes (`default` is `DEFAULT`'s): the shipped ones, or the one the user built
    (`onbeat graph build`), each with the styles it knows (`--style`, `/onbeat/style`)."""
    from onbeat.choreographers.kinds import installed_models, kind_named
    from onbeat.choreographers.library import DEFAULT
    lines = []
    for name, path in installed_models().items():
        files = list(kind_named(name).graph_paths(path).values())
        lines.append(f"{name}{' (default)' if name == DEFAULT else ''}: {', '.join(str(p) for p in files)}"
                     f" ({styles_of(files[0])})")
    return lines or [f"no shipped model found (looked in {paths.ASSETS})"]


def styles_of(path):
    """'styles: a, b' for an export file whose metadata lists styles, 'no styles' for one trained without."""
    from onbeat.choreographers.datafile import DataFile
    from onbeat.choreographers.onnx import OnnxStep
    from onbeat.core.errors import OnbeatError
    try:
        metadata = DataFile(path, arrays=False).metadata if path.suffix == ".npz" else OnnxStep(path).metadata
    except OnbeatError:
        return "unreadable"
    except ImportError:  # onnxruntime missing: said on its own line
        return "styles: not read without onnxruntime"
    styles = metadata.get("styles")
    return f"styles: {', '.join(styles)}" if styles else "no styles"


def add_arguments(parser):
    pass


def run(args):
    rows = [("onbeat", version_of("onbeat")), ("python", f"{platform.python_version()} ({platform.platform()})")]
    rows += [(name, version_of(name)) for name in PACKAGES]
    rows += [("onnx providers", onnx_providers()), ("data", data_location())]
    width = max(len(name) for name, _ in rows + [("audio devices", "")])
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    for title, lines in (("models", default_models()), ("programs", programs()), ("audio devices", audio_devices())):
        print(f"{title:<{width}}  {lines[0]}")
        for line in lines[1:]:
            print(f"{'':<{width}}  {line}")
    return 0
