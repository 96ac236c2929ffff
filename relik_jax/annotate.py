"""`python -m relik_jax.annotate`: the same as `relik-jax annotate` (see `relik_jax.cli.annotate`)."""

from relik_jax.cli import run_main
from relik_jax.cli.annotate import main

if __name__ == "__main__":
    run_main(main)
