# Sourced by demo.sh and test.sh: set up (idempotent), enter the environment, keep DDS local.
# shellcheck disable=SC1091
source "$(dirname "${BASH_SOURCE[0]}")/paths.sh"
bash "$CFI_ROOT/scripts/setup.sh"
set +u   # colcon's setup scripts read unset variables
# shellcheck disable=SC1091
source "$CFI_ROOT/scripts/env.sh"
set -u
# DDS traffic stays on this machine, in a domain of this run's own.
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$((10 + $$ % 90))}"
cd "$CFI_ROOT"
