#!/usr/bin/env bash
# Sets up everything the suite needs on a fresh Debian machine, then runs it.
# Usage: bash tests/run.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

# System tools the oracle and lab tests drive (root is needed to install them)
need=()
for tool in tshark:tshark tcpdump:tcpdump kamailio:kamailio sipp:sip-tester gcc:gcc; do
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
# the suite must test them, so here a failed build is an error
if ! .venv/bin/python -c 'import probe._fastdecode, sip_dissect._sipscan, sip_dissect._txnlayer' 2>/dev/null; then
  echo "tests/run.sh: the C accelerators did not build (gcc and Python.h needed); see pip's output:" >&2
  .venv/bin/pip install -v -e . 2>&1 | grep -iE "error|warning: building optional" >&2 || true
  exit 2
fi

# Strict mode re-raises inside the pipeline, so bugs are not hidden behind skip counters.
SIPPROBE_STRICT=1 exec .venv/bin/python -m pytest -q "$@"
