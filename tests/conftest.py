"""
pytest only: run the suite inside a scratch directory, as trial does.

Trial runs tests in ``_trial_temp/``, so ``TestCase.mktemp()`` paths are
relative to that; under pytest they would land in the checkout instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="session")
def _scratch_cwd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    previous = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("gatekeeper-tests"))
    try:
        yield
    finally:
        os.chdir(previous)
