"""The optional C kernel of the DVH sampler, and the switch that chooses it.

``pip install`` compiles ``rtcheck/dvh/_kernel.c`` into the top-level module
``_rtcheck_dvh`` where a C compiler exists (``setup.py``; the extension is optional, so an
install without a compiler still succeeds). It holds the sampler's two innermost loops, the
lattice-cell coverage of outlines and the trilinear dose with its spread at every sample,
in the same arithmetic as the NumPy code of :mod:`rtcheck.dvh.core`, and it releases the
GIL while it runs, so that two structures' DVHs use two cores.

The kernel changes speed, not answers: the two agree to rounding (the tests run the
analytic phantoms through both and compare them sample by sample). It is used when it
is importable and of this package's :data:`API_VERSION`; otherwise the NumPy code runs.
``RTCHECK_DVH_KERNEL=numpy`` in the environment chooses the NumPy code regardless.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

#: The C module's API_VERSION this package calls (a kernel built from another version of
#: the source is not used).
API_VERSION = 2

#: The functions this package calls (a module lacking one is not used).
FUNCTIONS = (
    "covered_cells",
    "edge_cells",
    "inside_raster",
    "nearest_distance",
    "sample_cells",
    "spread_histogram",
    "trilinear",
)

#: Environment variable that, set to ``numpy``, turns the kernel off.
ENVIRONMENT_VARIABLE = "RTCHECK_DVH_KERNEL"


def _load() -> ModuleType | None:
    try:
        module = importlib.import_module("_rtcheck_dvh")
    except ImportError:
        return None
    if getattr(module, "API_VERSION", None) != API_VERSION:
        return None
    if not all(callable(getattr(module, name, None)) for name in FUNCTIONS):
        return None
    return module


_BUILT = _load()
_active: ModuleType | None = (
    None if os.environ.get(ENVIRONMENT_VARIABLE, "").lower() == "numpy" else _BUILT
)


def built() -> bool:
    """Whether the C kernel of this version was built and can be imported."""
    return _BUILT is not None


def active() -> ModuleType | None:
    """The C kernel module the sampler uses now, or None for the NumPy code."""
    return _active


def name() -> str:
    """``"C"`` or ``"NumPy"``: what computes the DVH samples now (for reports and logs)."""
    return "NumPy" if _active is None else "C"


@contextmanager
def using(kernel: bool) -> Iterator[None]:
    """Within the block, sample with the C kernel (``True``, which must be built) or the
    NumPy code (``False``). Not thread-safe: for tests and benchmarks."""
    global _active
    if kernel and _BUILT is None:
        raise RuntimeError(
            "the C kernel of the DVH sampler was not built in this install: reinstall "
            "rtcheck where a C compiler exists (pip install .)"
        )
    before = _active
    _active = _BUILT if kernel else None
    try:
        yield
    finally:
        _active = before
