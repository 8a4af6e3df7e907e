# Source this (bash) to use the built package: `source scripts/env.sh`.
# shellcheck disable=SC1091
source "$(dirname "${BASH_SOURCE[0]:-$0}")/paths.sh"
# shellcheck disable=SC1091
source "$CFI_VENV/bin/activate"
export AMENT_PREFIX_PATH="$CFI_VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
# shellcheck disable=SC1091
source "$CFI_ROOT/install/setup.sh"
