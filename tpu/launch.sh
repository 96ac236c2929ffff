#!/usr/bin/env bash
# Runs the same training command on every worker of a (multi-host) Cloud TPU VM.
#   tpu/launch.sh TPU_NAME ZONE CONFIG WORKDIR [--config.x=y ...]
# e.g. tpu/launch.sh my-v4-32 us-central2-b configs/rebel.py gs://bucket/runs/rebel --config.data.dir=/data/rebel
# Every worker runs `python -m relik_jax.train` with distributed.initialize=True (on Cloud TPU,
# jax.distributed.initialize() finds the coordinator by itself); each host feeds its slice of the
# global batch, Orbax writes one checkpoint from all hosts, metrics come from process 0. WORKDIR
# must be shared by all hosts (a gs:// bucket or a shared file system) for checkpoints to resume.
set -euo pipefail
TPU_NAME=${1:?usage: tpu/launch.sh TPU_NAME ZONE CONFIG WORKDIR [overrides...]}
ZONE=${2:?}
CONFIG=${3:?}
WORKDIR=${4:?}
shift 4
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command "
  cd ~/relik_jax && ~/relik-venv/bin/python -m relik_jax.train --config=$CONFIG --workdir=$WORKDIR \
    --config.distributed.initialize=True $*
"
