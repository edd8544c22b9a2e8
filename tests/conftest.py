"""Suite-wide settings: never touch the network, keep torch on the machine's two cores."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402
import torch  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSETS = os.path.join(REPO_ROOT, "assets")


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield


@pytest.fixture
def assets_dir() -> str:
    return ASSETS


@pytest.fixture
def fresh_app(monkeypatch, tmp_path):
    """The app's shape caches empty and no checkpoint (unless the test sets one), before and after a test.
    Use it with ``pytestmark = pytest.mark.usefixtures("fresh_app")``."""
    from app import shapes
    from app.resources import CHECKPOINT_ENV

    monkeypatch.setenv(CHECKPOINT_ENV, str(tmp_path / "no-checkpoint.safetensors"))
    shapes.clear_caches()
    yield
    shapes.clear_caches()


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op torch thread for a module's tests: small models run several times faster on the 2 shared
    cores of CI. Use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
