#!/usr/bin/env bash
# Sets up everything the suite needs on a fresh Debian machine, then runs it.
# Usage: bash tests/run.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

# System tools the oracle and lab tests drive (root is needed to install them)
need=()
# (the media lab: rtpengine-daemon, not the rtpengine metapackage, which pulls a kernel DKMS module)
for tool in tshark:tshark tcpdump:tcpdump kamailio:kamailio sipp:sip-tester gcc:gcc \
    rtpengine:rtpengine-daemon baresip:baresip-core iptables:iptables \
    tcpreplay:tcpreplay /usr/lib/postgresql/15/bin/pg_ctl:postgresql \
    mariadb-install-db:mariadb-server; do
  command -v "${tool%%:*}" >/dev/null || need+=("${tool##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "tests/run.sh: missing ${need[*]}; run as root or: sudo apt-get install -y ${need[*]}" >&2
    exit 2
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
# db_sqlite for the lab's accounting oracle ships separately from kamailio
if [ ! -e /usr/lib/x86_64-linux-gnu/kamailio/modules/db_sqlite.so ] \
    && ! ls /usr/lib/*/kamailio/modules/db_sqlite.so >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kamailio-sqlite-modules >/dev/null
  fi
fi

# the C accelerators compile against the interpreter's own headers (Debian: python3-dev)
if ! python3 -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
  if [ "$(id -u)" -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-dev >/dev/null
  fi
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip >/dev/null
.venv/bin/pip install -q -e '.[test]'
# setup.py marks them optional so that users without a compiler still get a working probe;
# the suite must test them, so here a module that did not build, or does not import compiled,
# is an error. The list is probe/native.py's, the one setup.py builds from.
if ! .venv/bin/python - <<'PY'
import importlib, sys
from probe.native import COMPILED, C_EXTENSIONS, is_compiled
bad = []
for name in C_EXTENSIONS + COMPILED:
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        bad.append(f"{name}: {exc}")
        continue
    if not is_compiled(module):
        bad.append(f"{name}: {module.__file__} (not compiled)")
if bad:
    print("tests/run.sh: not built: " + "; ".join(bad), file=sys.stderr)
    sys.exit(1)
PY
then
  echo "tests/run.sh: the native modules did not build (gcc, Python.h and Cython needed); see pip's output:" >&2
  .venv/bin/pip install -v -e . 2>&1 | grep -iE "error|warning: building optional" >&2 || true
  exit 2
fi

# Strict mode re-raises inside the pipeline, so bugs are not hidden behind skip counters.
export SIPPROBE_STRICT=1
SIPPROBE_PURE=0 .venv/bin/python -m pytest -q "$@"
# Then the same .py interpreted (the import hook in probe/native.py): the tests that drive the
# signalling layers, or those asked for.
pure=("$@")
if [ ${#pure[@]} -eq 0 ]; then
  pure=(tests/test_compiled.py tests/test_signalling_crafted.py tests/test_signalling_memory.py
        tests/test_call_events.py
        tests/test_dialog_layer.py tests/test_accounting_lab.py tests/test_cdr_lab.py
        tests/test_replay_cdrs.py tests/test_rows_fast.py tests/test_cli.py::test_replay_says_which_engine_ran)
fi
SIPPROBE_PURE=1 exec .venv/bin/python -m pytest -q "${pure[@]}"
