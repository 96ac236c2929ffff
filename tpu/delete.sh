#!/usr/bin/env bash
# Deletes the TPU VM (and its queued resource with --queued). Checkpoints in the mounted bucket stay.
#   tpu/delete.sh NAME ZONE [--queued] [--dry-run]
set -euo pipefail
# shellcheck source=tpu/common.sh
source "$(dirname "$0")/common.sh"
parse_dry_run "$@"
set -- "${ARGS[@]}"
QUEUED=0 POS=()
for a in "$@"; do
  if [[ $a == --queued ]]; then QUEUED=1; else POS+=("$a"); fi
done
((${#POS[@]} == 2)) || die "usage: tpu/delete.sh NAME ZONE [--queued] [--dry-run]"
NAME=${POS[0]} ZONE=${POS[1]}
if ((QUEUED)); then
  run gcloud compute tpus queued-resources delete "$NAME-qr" --zone="$ZONE" --force --quiet
else
  run gcloud compute tpus tpu-vm delete "$NAME" --zone="$ZONE" --quiet
fi
