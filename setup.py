"""Native code, all optional, so that an install without a C compiler (or without Cython)
still works: the .py sources then run interpreted and `sipprobe replay` says so.
- C extensions for byte parsing (probe/native.py C_EXTENSIONS);
- the modules of probe/native.py COMPILED, compiled by Cython 3 from their own .py (pure-Python
  mode), each with a .pxd generated from it first (native/pxdgen.py), so that the annotations
  of its classes are the one declaration of their fields.
Metadata lives in pyproject.toml."""
import importlib.util
import os
import sys

from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _load(name, path):
    """A module of this tree by path: setup.py runs before the package is importable."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, path))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and the like look themselves up there
    spec.loader.exec_module(module)
    return module


native = _load("_sipprobe_native", "probe/native.py")

# native/: headers they share (the byte-hash mixer, the counter increment)
NATIVE = {"include_dirs": ["native"], "depends": ["native/mum.h", "native/counters.h"]}

ext_modules = [
    Extension("probe._fastdecode", ["probe/_fastdecode.c"], optional=True,
              extra_compile_args=["-O2"], **NATIVE),
    # -O3: its small scanning helpers inlined into the per-message loop (-9 % instructions)
    Extension("sip_dissect._sipscan", ["sip_dissect/_sipscan.c"], optional=True,
              extra_compile_args=["-O3"], **NATIVE),
    Extension("probe._pcapfile", ["probe/_pcapfile.c"], optional=True,
              extra_compile_args=["-O2"]),
    Extension("rtcp_mos._rtcpscan", ["rtcp_mos/_rtcpscan.c"], optional=True,
              extra_compile_args=["-O2"]),
]
assert [e.name for e in ext_modules] == list(native.C_EXTENSIONS)


def _cython_modules():
    try:
        from Cython.Build import cythonize
    except ImportError:  # pip installs it first (pyproject.toml); a bare setup.py run may not
        print("warning: Cython not found: the signalling layers will run interpreted",
              file=sys.stderr)
        return []
    _load("_sipprobe_pxdgen", "native/pxdgen.py").generate(HERE, native.COMPILED)
    out = []
    for name in native.COMPILED:
        # -fno-builtin in rtcp_mos: gcc would fold pow(x, 2.0) into x * x and log10(2.0) into
        # a constant, a last bit away from the libm calls Python's float ** and math make, and
        # the E-model's cancellations make that bit visible in R (rows must not depend on
        # which engine ran)
        flags = ["-O2", "-fno-builtin"] if name.startswith("rtcp_mos.") else ["-O2"]
        source = Extension(name, [name.replace(".", "/") + ".py"], optional=True,
                           extra_compile_args=flags)
        # no wraparound=False and the like: the code indexes with -1, and both runs must agree
        out += cythonize([source], language_level=3, compiler_directives={
            "annotation_typing": name in native.TYPED})
    return out


setup(ext_modules=ext_modules + _cython_modules())
