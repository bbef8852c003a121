"""Build script: maps the top-level kernels/ folder to impresslearn.kernels and builds the native
CPU ops of csrc/ into impresslearn/_native.so (torch.utils.cpp_extension, ninja).

The native ops use only torch's stable ABI (torch/csrc/stable, torch/headeronly) and are compiled
with TORCH_TARGET_VERSION = torch 2.11, so one build loads on every torch >= 2.11, whichever torch
compiled it: pip's build isolation may build against a newer torch than the environment runs.

The native ops are optional. Without torch or a C++ compiler at build time, or when the build
fails, the package still installs and runs on the reference backend; `impresslearn.native.UNAVAILABLE`
(and `impresslearn doctor`) says why. IMPRESSLEARN_NO_NATIVE=1 skips the build.

Under build isolation (a plain `pip install`), torch is not in the build environment at first:
setup_requires then asks for torch and ninja, but only when a C++ compiler is there to use them,
so a machine without one does not download torch twice for nothing.

Next to the library the build writes _native.json: the torch it was compiled with, the torch it
targets (so that impresslearn.native can refuse it on an older torch before loading it) and the
package version it belongs to.

The wheel is tagged cp310-abi3 (bdist_wheel's py_limited_api): the library uses no Python C API
(it is loaded with torch.ops.load_library), so one wheel serves every CPython >= 3.10; `python -m
build` then `auditwheel repair` make its manylinux tag (docs/packaging.md).
"""

import glob
import json
import os
import re
import shutil
import sys

from setuptools import find_packages, setup

NATIVE = "impresslearn._native"
# The oldest torch the native ops load on: TORCH_TARGET_VERSION's layout is one byte each of
# major, minor and patch, then the ABI tag (torch/headeronly/version.h).
TARGET_TORCH = (2, 11)
TARGET_TORCH_HEX = f"0x{TARGET_TORCH[0]:02x}{TARGET_TORCH[1]:02x}000000000000"


def _version() -> str:
    """impresslearn.__version__, read from the source (the one place it is written)."""
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "impresslearn", "__init__.py")) as f:
        return re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)


def _say(message: str) -> None:
    # pip shows a build's stderr with -v, or when the build fails.
    print(f"impresslearn: {message}", file=sys.stderr)


def _skip_native() -> bool:
    return os.environ.get("IMPRESSLEARN_NO_NATIVE", "0") not in ("", "0")


def _has_compiler() -> bool:
    return any(shutil.which(c) for c in (os.environ.get("CXX", ""), "c++", "g++", "clang++") if c)


def build_requirements() -> list:
    """What the native build needs beyond pyproject's [build-system] (PEP 517 build isolation)."""
    if _skip_native() or not _has_compiler():
        return []
    try:
        import torch  # noqa: F401  (present: nothing to add)

        return []
    except ImportError:
        return ["torch>=2.11", "ninja>=1.11"]


def native_extension():
    """(ext_modules, cmdclass) for the native ops, or ([], {}) when they cannot be built here."""
    if _skip_native():
        _say("IMPRESSLEARN_NO_NATIVE is set: not building the native CPU ops")
        return [], {}
    try:
        import torch
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except Exception as err:  # no torch in the build environment
        _say(f"torch is not importable at build time ({err}); the native CPU ops are not built")
        return [], {}

    # Every kernel reaches torch through the stable C ABI only (csrc/stable_tensor.h); the target
    # version hides whatever newer torch headers offer beyond 2.11. Threads come from torch's own
    # pool (torch::stable::parallel_for), so no OpenMP flags. No Python C API either: the library
    # is loaded with torch.ops.load_library, so it is built for the limited API (torch then defines
    # Py_LIMITED_API and leaves out libtorch_python).
    cflags = ["-O3", f"-DTORCH_TARGET_VERSION={TARGET_TORCH_HEX}"]
    ext = CppExtension(NATIVE, sorted(glob.glob("csrc/*.cpp")), extra_compile_args=cflags, py_limited_api=True)

    class OptionalBuild(BuildExtension):
        """A failed compile leaves the package installable; a good one records its torch."""

        def run(self):
            try:
                super().run()
            except Exception as err:
                _say(f"building the native CPU ops failed; the reference backend will be used: {err}")
                self.extensions = []  # nothing to copy or install
                return
            info = {
                "abi": "stable",
                "target_torch": ".".join(map(str, TARGET_TORCH)),
                "built_with_torch": torch.__version__,
                "version": _version(),
            }
            path = os.path.join(os.path.dirname(self.get_ext_fullpath(NATIVE)), "_native.json")
            with open(path, "w") as f:
                json.dump(info, f)

    return [ext], {"build_ext": OptionalBuild.with_options(no_python_abi_suffix=True)}


ext_modules, cmdclass = native_extension()
packages = find_packages(include=["impresslearn", "impresslearn.*"])

setup(
    packages=packages + ["impresslearn.kernels"],
    package_dir={"impresslearn.kernels": "kernels"},
    package_data={"impresslearn": ["py.typed"], "impresslearn.data": ["*.npz"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    setup_requires=build_requirements(),
    # one wheel for every CPython >= 3.10: the native library has no Python C API in it
    options={"bdist_wheel": {"py_limited_api": "cp310"}} if ext_modules else {},
)
