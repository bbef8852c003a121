"""Build script: maps the top-level kernels/ folder to impresslearn.kernels and builds the native
CPU ops of csrc/ into impresslearn/_native.so (torch.utils.cpp_extension, ninja).

The native ops are optional. Without torch or a C++ compiler at build time, or when the build
fails, the package still installs and runs on the reference backend; `impresslearn.native.UNAVAILABLE`
(and `available_backends()`) says why. IMPRESSLEARN_NO_NATIVE=1 skips the build.

Under build isolation (a plain `pip install`), torch is not in the build environment at first:
setup_requires then asks for torch and ninja, but only when a C++ compiler is there to use them,
so a machine without one does not download torch twice for nothing.

Next to the library the build writes _native.json with the torch it was compiled against, so that
impresslearn.native can refuse a library built for another torch before loading it.
"""

import glob
import json
import os
import shutil
import sys

from setuptools import find_packages, setup

NATIVE = "impresslearn._native"


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

    cflags, ldflags = ["-O3"], []
    if sys.platform.startswith("linux") and torch.backends.openmp.is_available():
        # at::parallel_for only runs threads in code compiled with OpenMP; the library then
        # shares torch's libgomp (same soname), so torch.set_num_threads governs it too.
        cflags.append("-fopenmp")
        ldflags.append("-fopenmp")
    ext = CppExtension(NATIVE, sorted(glob.glob("csrc/*.cpp")), extra_compile_args=cflags, extra_link_args=ldflags)

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
                "torch": torch.__version__,
                "cxx11_abi": bool(torch._C._GLIBCXX_USE_CXX11_ABI),
                "openmp": "-fopenmp" in cflags,
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
    package_data={"impresslearn.data": ["*.npz"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    setup_requires=build_requirements(),
)
