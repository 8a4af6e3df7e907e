#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite: `bash scripts/test.sh [pytest args]`.
set -euo pipefail
# shellcheck disable=SC1091
source "$(dirname "${BASH_SOURCE[0]}")/paths.sh"
bash "$CFI_ROOT/scripts/setup.sh"
# colcon's setup scripts read unset variables
set +u
# shellcheck disable=SC1091
source "$CFI_ROOT/scripts/env.sh"
set -u
# DDS traffic stays on this machine, in a domain of this run's own.
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$((10 + $$ % 90))}"
export CFI_REQUIRE_ROS=1
cd "$CFI_ROOT"
exec pytest "$@"
