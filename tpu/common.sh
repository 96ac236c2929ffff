#!/usr/bin/env bash
# Shared by the tpu/*.sh scripts (sourced): --dry-run handling and the one way gcloud is called.
# With --dry-run (anywhere on the command line) every gcloud command is printed, shell-quoted, one
# per line, instead of run.

DRY_RUN=0
ARGS=()

parse_dry_run() {
  local a
  for a in "$@"; do
    if [[ $a == --dry-run ]]; then DRY_RUN=1; else ARGS+=("$a"); fi
  done
}

# one argument as a POSIX shell word: bare when safe, else in single quotes ('--flag=' stays outside)
quote() {
  local a=$1 flag=""
  if [[ $a =~ ^(--[A-Za-z0-9-]+=)(.*)$ ]]; then
    flag=${BASH_REMATCH[1]} a=${BASH_REMATCH[2]}
  fi
  if [[ $a =~ ^[A-Za-z0-9_@%+=:,./~-]*$ ]]; then
    printf '%s%s' "$flag" "$a"
  else
    printf "%s'%s'" "$flag" "${a//\'/\'\\\'\'}"
  fi
}

run() {
  if ((DRY_RUN)); then
    local out="" a
    for a in "$@"; do out+="$(quote "$a") "; done
    echo "${out% }"
  else
    "$@"
  fi
}

# gcloud compute tpus tpu-vm ssh on WORKER (all | 0 | ...) with a remote command
on_workers() {
  local name=$1 zone=$2 worker=$3 command=$4
  run gcloud compute tpus tpu-vm ssh "$name" --zone="$zone" --worker="$worker" --command="$command"
}

die() {
  echo "error: $*" >&2
  exit 2
}
