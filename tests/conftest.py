import pytest
from jack_helpers import SAMPLE_RATE, CaptureJackServer
from log_capture import LogLines

from onbeat.core.errors import OnbeatError
from onbeat.core.paths import data_root
from onbeat.ear.devices import import_sounddevice


@pytest.fixture(scope="session")
def data_dir():
    """The shared real data; tests that need it skip with the reason when it is absent (a user's fresh clone)."""
    root = data_root()
    if root is None:
        pytest.skip("real data not found: set ONBEAT_DATA or put the shared data at ../shared/data")
    return root


@pytest.fixture
def logs():
    """The messages onbeat logs during the test (any thread), as a list of strings."""
    with LogLines() as captured:
        yield captured.lines


@pytest.fixture
def portaudio():
    """sounddevice, for tests that need the PortAudio library; they skip with the reason where it is missing
    (onbeat itself runs without it, silently)."""
    try:
        return import_sounddevice()
    except OnbeatError as e:
        pytest.skip(str(e))


@pytest.fixture
def jack_server(portaudio):
    """A private dummy JACK server; onbeat reaches it through PortAudio, so both must be here."""
    try:
        server = CaptureJackServer(prefix="onbeat-test", sample_rate=SAMPLE_RATE)
    except OnbeatError as e:  # jackd missing, or the dummy backend would not start here
        pytest.skip(str(e))
    yield server
    server.stop()
