"""Native accelerators: optional, so that an install without a C compiler still works (the
pure-Python twins are used and `sipprobe replay` says so). Metadata lives in pyproject.toml."""
from setuptools import Extension, setup

# native/: headers they share (the byte-hash mixer, the counter increment)
NATIVE = {"include_dirs": ["native"], "depends": ["native/mum.h", "native/counters.h"]}

setup(ext_modules=[
    Extension("probe._fastdecode", ["probe/_fastdecode.c"], optional=True,
              extra_compile_args=["-O2"], **NATIVE),
    # -O3: its small scanning helpers inlined into the per-message loop (-9 % instructions)
    Extension("sip_dissect._sipscan", ["sip_dissect/_sipscan.c"], optional=True,
              extra_compile_args=["-O3"], **NATIVE),
    Extension("sip_dissect._txnlayer", ["sip_dissect/_txnlayer.c"], optional=True,
              extra_compile_args=["-O2"], **NATIVE),
    Extension("sip_dissect._dialogs", ["sip_dissect/_dialogs.c"], optional=True,
              extra_compile_args=["-O2"], **NATIVE),
])
