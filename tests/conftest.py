"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

#: Real exports and the Nelms benchmark, outside the repository (never copied into it).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The ``../shared/data`` folder; tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} not present")
    return SHARED_DATA


@pytest.fixture(params=["C", "NumPy"])
def dvh_kernel(request: pytest.FixtureRequest) -> Iterator[str]:
    """Runs a test once with the DVH sampler's C kernel and once with its NumPy code (the
    C run skips where the kernel was not built; ``tests/test_dvh_kernel.py`` fails where
    a compiler exists and it was not)."""
    from rtcheck.dvh import kernel

    use_c = request.param == "C"
    if use_c and not kernel.built():
        pytest.skip("the C kernel of the DVH sampler was not built in this install")
    with kernel.using(use_c):
        yield request.param
