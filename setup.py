"""Build script: the metadata lives in pyproject.toml; this file only builds _native/.

The Cython kernels in ``_native/*.pyx`` become modules ``actors._native_<name>``.
They are optional: without a compiler (or with ``EDGE_ACTORS_NO_EXT=1``) the
package installs and falls back to its pure-numpy twins, saying so in the log.
``EDGE_ACTORS_REQUIRE_EXT=1`` turns a failed build into a failed install.
"""

import glob
import os
import sys

from setuptools import Extension, setup


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def native_extensions() -> list[Extension]:
    if _flag("EDGE_ACTORS_NO_EXT"):
        print("edge-actors: EDGE_ACTORS_NO_EXT set, skipping the native extension", file=sys.stderr)
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        if _flag("EDGE_ACTORS_REQUIRE_EXT"):
            raise
        print("edge-actors: Cython missing, skipping the native extension", file=sys.stderr)
        return []
    sources = sorted(glob.glob(os.path.join("_native", "*.pyx")))
    extensions = [
        Extension(
            "actors._native_" + os.path.splitext(os.path.basename(src))[0],
            [src],
            # The C kernels the .pyx includes: a change to one rebuilds the module.
            depends=sorted(glob.glob(os.path.join("_native", "*.h"))),
            extra_compile_args=["-O3"],
        )
        for src in sources
    ]
    built = cythonize(
        extensions,
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    )
    # cythonize() drops Extension(optional=True): set it again, or a missing
    # compiler fails the install instead of falling back to Python.
    for ext in built:
        ext.optional = not _flag("EDGE_ACTORS_REQUIRE_EXT")
    return built


setup(ext_modules=native_extensions())
