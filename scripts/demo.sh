#!/usr/bin/env bash
# Set up (idempotent) and run the main job: the lifting node on the bundled 2D clip at 30 Hz.
# Writes outputs/demo/{skeletons.gif,skeletons.png,report.md,demo.mcap}. Extra args go to the demo.
set -euo pipefail
# shellcheck disable=SC1091
source "$(dirname "${BASH_SOURCE[0]}")/prepare.sh"
# -P: the repository root must not shadow the install space's cfi_pose_ros (generated messages)
exec python -P -m cfi_pose_ros.demo --out outputs/demo "$@"
