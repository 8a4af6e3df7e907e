#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite: `bash scripts/test.sh [pytest args]`.
set -euo pipefail
# shellcheck disable=SC1091
source "$(dirname "${BASH_SOURCE[0]}")/prepare.sh"
export CFI_REQUIRE_ROS=1      # here a missing ROS is a failure, not a skip
# `pytest`, not `python -m pytest`: the repository root must not shadow the install space's
# cfi_pose_ros (which holds the generated messages).
exec pytest "$@"
