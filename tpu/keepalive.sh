#!/usr/bin/env bash
# Keeps a spot / preemptible run going: every INTERVAL seconds, checks the TPU's state; when it was
# preempted, deletes it, recreates it (queued), installs REF and relaunches the same training,
# which resumes from WORKDIR's last checkpoint. Run it on your workstation (or a small VM).
#   tpu/keepalive.sh NAME ZONE ACCELERATOR REPO_URL REF CONFIG WORKDIR [--config.x=y ...] [--dry-run]
# --dry-run prints the commands of one recovery (describe, delete, create, setup, launch) and stops.
set -euo pipefail
HERE=$(dirname "$0")
# shellcheck source=tpu/common.sh
source "$HERE/common.sh"
parse_dry_run "$@"
set -- "${ARGS[@]}"
(($# >= 7)) || die "usage: tpu/keepalive.sh NAME ZONE ACCELERATOR REPO_URL REF CONFIG WORKDIR [--config.x=y ...] [--dry-run]"
NAME=$1 ZONE=$2 ACCEL=$3 REPO=$4 REF=$5 CONFIG=$6 WORKDIR=$7
shift 7
INTERVAL=${INTERVAL:-300}
DRY=()
((DRY_RUN)) && DRY=(--dry-run)

recover() {
  "$HERE/delete.sh" "$NAME" "$ZONE" --queued "${DRY[@]}"
  "$HERE/create.sh" "$NAME" "$ZONE" "$ACCEL" --queued --spot "${DRY[@]}"
  ((DRY_RUN)) || until [[ $(state) == READY ]]; do sleep 60; done
  "$HERE/setup.sh" "$NAME" "$ZONE" "$REPO" "$REF" "${DRY[@]}"
  "$HERE/launch.sh" "$NAME" "$ZONE" "$CONFIG" "$WORKDIR" "$@" "${DRY[@]}"
}

state() {
  run gcloud compute tpus tpu-vm describe "$NAME" --zone="$ZONE" --format='value(state)' 2>/dev/null || echo MISSING
}

if ((DRY_RUN)); then
  state
  recover "$@"
  exit 0
fi
while true; do
  s=$(state)
  case $s in
    PREEMPTED | TERMINATED | MISSING) echo "$(date -u +%FT%TZ) $NAME is $s: recreating" && recover "$@" ;;
    *) ;;
  esac
  sleep "$INTERVAL"
done
