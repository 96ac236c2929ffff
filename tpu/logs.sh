#!/usr/bin/env bash
# Follows the training log of worker 0 (metrics and the progress bar come from process 0).
#   tpu/logs.sh NAME ZONE [--dry-run]
set -euo pipefail
# shellcheck source=tpu/common.sh
source "$(dirname "$0")/common.sh"
parse_dry_run "$@"
set -- "${ARGS[@]}"
(($# == 2)) || die "usage: tpu/logs.sh NAME ZONE [--dry-run]"
on_workers "$1" "$2" 0 "tail -n 200 -F ~/relik-train.log"
