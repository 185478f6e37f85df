"""Shared pytest fixtures."""

from __future__ import annotations

import os
import shutil
import sysconfig
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


def c_compiler() -> str | None:
    """The C compiler an install here would build the DVH kernel with, if any."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc)


def require_c_kernel() -> None:
    """Return when the C kernel of the DVH sampler is built; otherwise fail, except on a
    machine with no C compiler and no ``CI`` variable, where the test is skipped.

    The kernel is optional: an install without a compiler runs the NumPy code (every DVH
    test runs with it too), so there the C path cannot be exercised. Where a compiler
    exists the install must have built it, and CI (``.ci/run``, gcc present) must never
    skip it: both are failures, as for the browser test of the HTML report.
    """
    from rtcheck.dvh import kernel

    if kernel.built():
        return
    reason = (
        "the C kernel of the DVH sampler (_rtcheck_dvh, API "
        f"{kernel.API_VERSION}) is not built in this install"
    )
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {reason}: .ci/run's pip install must compile it")
    if c_compiler() is not None:
        pytest.fail(f"a C compiler exists but {reason}: reinstall rtcheck (pip install .)")
    pytest.skip(f"{reason} and no C compiler is here to build it: the NumPy code runs")


@pytest.fixture
def c_kernel() -> None:
    """The C kernel is built (see :func:`require_c_kernel`)."""
    require_c_kernel()


@pytest.fixture(params=["C", "NumPy"])
def dvh_kernel(request: pytest.FixtureRequest) -> Iterator[str]:
    """Runs a test once with the DVH sampler's C kernel and once with its NumPy code (the
    C run as :func:`require_c_kernel` decides where the kernel is not built)."""
    from rtcheck.dvh import kernel

    use_c = request.param == "C"
    if use_c:
        require_c_kernel()
    with kernel.using(use_c):
        yield request.param
