import pytest

from onbeat.models.paths import data_root


@pytest.fixture(scope="session")
def data_dir():
    """The shared real data; tests that need it skip with the reason when it is absent (a user's fresh clone)."""
    root = data_root()
    if root is None:
        pytest.skip("real data not found: set ONBEAT_DATA or put the shared data at ../shared/data")
    return root
