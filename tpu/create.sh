#!/usr/bin/env bash
# Creates a Cloud TPU VM or pod slice.
#   tpu/create.sh NAME ZONE ACCELERATOR [RUNTIME] [--queued] [--spot] [--dry-run]
# e.g. tpu/create.sh relik-v5e us-west4-a v5litepod-8 v2-alpha-tpuv5-lite --queued --spot
# --queued asks through a queued resource (it waits for capacity; a preempted spot slice is
# recreated by tpu/keepalive.sh), otherwise the VM is created at once.
set -euo pipefail
# shellcheck source=tpu/common.sh
source "$(dirname "$0")/common.sh"
parse_dry_run "$@"
set -- "${ARGS[@]}"
QUEUED=0 SPOT=0 POS=()
for a in "$@"; do
  case $a in
    --queued) QUEUED=1 ;;
    --spot) SPOT=1 ;;
    *) POS+=("$a") ;;
  esac
done
((${#POS[@]} >= 3)) || die "usage: tpu/create.sh NAME ZONE ACCELERATOR [RUNTIME] [--queued] [--spot] [--dry-run]"
NAME=${POS[0]} ZONE=${POS[1]} ACCEL=${POS[2]} RUNTIME=${POS[3]:-tpu-ubuntu2204-base}
EXTRA=()
if ((QUEUED)); then
  ((SPOT)) && EXTRA+=(--spot)
  run gcloud compute tpus queued-resources create "$NAME-qr" --node-id="$NAME" --zone="$ZONE" \
    --accelerator-type="$ACCEL" --runtime-version="$RUNTIME" "${EXTRA[@]}"
else
  ((SPOT)) && EXTRA+=(--spot)
  run gcloud compute tpus tpu-vm create "$NAME" --zone="$ZONE" --accelerator-type="$ACCEL" \
    --version="$RUNTIME" "${EXTRA[@]}"
fi
