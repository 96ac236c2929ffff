#!/usr/bin/env bash
# Runs `python -m relik_jax.train` on every worker, in the background, resuming after a crash.
#   tpu/launch.sh NAME ZONE CONFIG WORKDIR [--config.x=y ...] [--dry-run]
# e.g. tpu/launch.sh relik-v5e us-west4-a configs/aida_large.py /gcs/bucket/runs/aida \
#        --config.model.encoder=/data/deberta-v3-large --config.data.dir=/data/aida
# Each worker loops: train (which resumes from WORKDIR's last Orbax checkpoint) until it exits 0,
# at most 20 tries; the log is ~/relik-train.log on each worker (tpu/logs.sh follows worker 0).
# WORKDIR must be shared by all hosts: a bucket mounted at the same path on every worker (gcsfuse;
# tpu/README.md), since metrics, exports and bundles are written with local file APIs.
set -euo pipefail
# shellcheck source=tpu/common.sh
source "$(dirname "$0")/common.sh"
parse_dry_run "$@"
set -- "${ARGS[@]}"
(($# >= 4)) || die "usage: tpu/launch.sh NAME ZONE CONFIG WORKDIR [--config.x=y ...] [--dry-run]"
NAME=$1 ZONE=$2 CONFIG=$3 WORKDIR=$4
shift 4
OVERRIDES=""
for a in "$@"; do OVERRIDES+=" $(printf '%q' "$a")"; done
# shellcheck disable=SC2088  # ~ expands on the worker
TRAIN="~/relik-venv/bin/python -m relik_jax.train --config=$CONFIG --workdir=$WORKDIR --config.distributed.initialize=True$OVERRIDES"
REMOTE="cd ~/relik_jax && nohup bash -c 'for i in \$(seq 20); do $TRAIN && exit 0; echo \"relaunch \$i\"; sleep 30; done; exit 1' > ~/relik-train.log 2>&1 &"
on_workers "$NAME" "$ZONE" all "$REMOTE"
