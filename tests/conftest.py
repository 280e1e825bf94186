"""One suite, two backends: every behavioural test takes the `backend` fixture."""
import importlib
import os
import warnings

import pytest
from hypothesis import settings

# When a hypothesis test fails, hypothesis's pytest plugin imports hypothesis.extra._patching
# (libcst), and that import warns (a DeprecationWarning from mypy_extensions): under
# filterwarnings = error this is an INTERNALERROR that ends the whole session instead of
# a reported failure. Importing it once here, warnings off, makes the later import a no-op.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:  # libcst not installed: nothing to pre-import
        pass

settings.register_profile("ci", deadline=None, derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

BACKENDS = ("tapegrad.reference", "tapegrad")


@pytest.fixture(scope="session", params=BACKENDS, ids=("reference", "cpp"))
def backend(request):
    """The backend module under test: `tapegrad.reference` or `tapegrad` (the C++ tape)."""
    return importlib.import_module(request.param)



@pytest.fixture
def detection_starts_off():
    """Anomaly detection is off before the test and again after it (the test_anomaly_*
    files use this for every test)."""
    core = importlib.import_module("tapegrad._core")
    assert not core.is_anomaly_enabled()
    yield
    assert not core.is_anomaly_enabled(), "a test left anomaly detection on"


@pytest.fixture(autouse=True, scope="session")
def native_code_cache(tmp_path_factory):
    """F.compile() in tests and doc examples builds into a temporary cache, never the
    user's (~/.cache/tapegrad)."""
    old = os.environ.get("TAPEGRAD_CACHE_DIR")
    os.environ["TAPEGRAD_CACHE_DIR"] = str(tmp_path_factory.mktemp("native-cache"))
    yield
    if old is None:
        os.environ.pop("TAPEGRAD_CACHE_DIR", None)
    else:
        os.environ["TAPEGRAD_CACHE_DIR"] = old
