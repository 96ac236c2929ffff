#!/usr/bin/env bash
# shellcheck disable=SC2088  # every ~ is expanded on the workers, not here
# Installs relik_jax at a given git ref on every worker of a TPU VM / pod slice.
#   tpu/setup.sh NAME ZONE REPO_URL REF [--dry-run]
# e.g. tpu/setup.sh relik-v5e us-west4-a https://github.com/you/relik_jax.git v0.1.0
# Every worker gets the same venv (~/relik-venv) with the pinned jax[tpu] and relik_jax from REF,
# then prints its process index and device counts (all workers must agree on the totals).
set -euo pipefail
# shellcheck source=tpu/common.sh
source "$(dirname "$0")/common.sh"
parse_dry_run "$@"
set -- "${ARGS[@]}"
(($# == 4)) || die "usage: tpu/setup.sh NAME ZONE REPO_URL REF [--dry-run]"
NAME=$1 ZONE=$2 REPO=$3 REF=$4
JAX_VERSION=0.10.2
STEPS=(
  "python3 -m venv ~/relik-venv"
  "~/relik-venv/bin/pip install -q -U pip"
  "~/relik-venv/bin/pip install -q 'jax[tpu]==$JAX_VERSION'"
  "{ [ -d ~/relik_jax ] || git clone -q $REPO ~/relik_jax; }"
  "cd ~/relik_jax && git fetch -q origin && git checkout -q $REF"
  "~/relik-venv/bin/pip install -q -e '.[tpu]'"
  "~/relik-venv/bin/python -c 'import jax; print(jax.process_index(), jax.local_device_count(), jax.device_count())'"
)
REMOTE=$(printf ' && %s' "${STEPS[@]}")
REMOTE=${REMOTE# && }
on_workers "$NAME" "$ZONE" all "$REMOTE"
