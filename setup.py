"""Build hook for the optional C kernel of the DVH sampler.

Everything else about the package is declared in pyproject.toml. The extension is
``optional``: where no C compiler exists, ``pip install .`` still succeeds and rtcheck uses
the NumPy code that computes the same (see rtcheck/dvh/kernel.py).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "_rtcheck_dvh",
            sources=["rtcheck/dvh/_kernel.c"],
            extra_compile_args=["-O2"] if __import__("os").name != "nt" else [],
            optional=True,
        )
    ]
)
