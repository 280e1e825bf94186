"""One suite, two backends: every behavioural test takes the `backend` fixture."""
import importlib
import os

import pytest
from hypothesis import settings

settings.register_profile("ci", deadline=None, derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

BACKENDS = ("tapegrad.reference", "tapegrad")


@pytest.fixture(scope="session", params=BACKENDS, ids=("reference", "cpp"))
def backend(request):
    """The backend module under test: `tapegrad.reference` or `tapegrad` (the C++ tape)."""
    return importlib.import_module(request.param)

