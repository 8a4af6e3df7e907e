#!/usr/bin/env bash
# Set up (idempotent) and run the main job: the lifting node on the bundled 2D clip at 30 Hz.
# Writes outputs/demo/{skeletons.gif,skeletons.png,report.md}. Extra args go to the demo.
set -euo pipefail
# shellcheck disable=SC1091
source "$(dirname "${BASH_SOURCE[0]}")/paths.sh"
bash "$CFI_ROOT/scripts/setup.sh"
# colcon's setup scripts read unset variables
set +u
# shellcheck disable=SC1091
source "$CFI_ROOT/scripts/env.sh"
set -u
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$((10 + $$ % 90))}"
cd "$CFI_ROOT"
exec python -P -m cfi_pose_ros.demo --out outputs/demo "$@"
