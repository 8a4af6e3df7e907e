#!/usr/bin/env bash
# Set up (idempotent) and run the main job: the lifting node on the bundled 2D clip at 30 Hz.
# Writes outputs/demo/{skeletons.gif,skeletons.png,report.md,demo.mcap}. Extra args go to the demo.
set -euo pipefail
# shellcheck disable=SC1091
chosen_domain="${ROS_DOMAIN_ID-}"
source "$(dirname "${BASH_SOURCE[0]}")/prepare.sh"
# prepare.sh's domain is this shell's pid's: the demo claims a free one itself (two demos at once
# could share the pid's), unless the caller chose one
[ -n "$chosen_domain" ] || unset ROS_DOMAIN_ID
# -P: the repository root must not shadow the install space's cfi_pose_ros (generated messages)
exec python -P -m cfi_pose_ros.demo --out outputs/demo "$@"
