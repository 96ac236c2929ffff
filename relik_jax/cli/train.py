"""`relik-jax train --config=configs/rebel.py [--workdir=DIR] [--config.x=y ...]` (also `python -m relik_jax.train`)

Trains what the config describes (see `relik_jax/training/config.py` for every key), resuming from
WORKDIR's last checkpoint when there is one, then prints the dev (and test) metrics of the best
checkpoint and where the checkpoints, metrics and exported reader went. With no `data.dir`, a
config trains on the sample shipped in the package and says so first. The work is
`relik_jax.training.run.train`; this module only reads the flags.
"""

from __future__ import annotations

import logging
import os
import sys

from absl import app, flags
from ml_collections import config_flags

from relik_jax.cli import report_error
from relik_jax.training.run import train

_CONFIG = config_flags.DEFINE_config_file("config", None, "an ml_collections config file (configs/*.py[:variant])")
_WORKDIR = flags.DEFINE_string("workdir", None, "checkpoints, metrics and the export go here (default: runs/<config>)")


def main(argv) -> int:
    del argv
    config = _CONFIG.value
    if config is None:
        raise app.UsageError("--config is required, e.g. --config=configs/rebel.py")
    name = os.path.splitext(os.path.basename(flags.FLAGS["config"].config_filename))[0]
    train(config, _WORKDIR.value, name=name)
    return 0


def run(argv: list[str] | None = None, command=None) -> None:
    """Parses the flags (a bad one is one line, exit status 2) and trains (or runs `command(argv)`,
    another absl command with a `--config`)."""

    def wrapped(argv):
        logging.getLogger("absl").setLevel(logging.WARNING)
        return report_error(command or main, argv)

    def parse(argv):
        try:
            return flags.FLAGS(argv)
        except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
            text = str(e).strip("\"'")
            if isinstance(e, (AttributeError, KeyError)):
                text = f"unknown config key {text!r} (the config is locked: only its own keys can be set)"
            elif "Traceback" in text:  # config_flags quotes the config file's traceback: keep what it raised
                lines = text.strip().splitlines()
                text = f"{lines[0].rstrip(':')}: {lines[-1]}"
            print(f"error: {text}", file=sys.stderr)
            sys.exit(2)

    app.run(wrapped, argv=argv, flags_parser=parse)
