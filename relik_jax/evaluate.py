"""`python -m relik_jax.evaluate`: the same as `relik-jax evaluate` (see `relik_jax.cli.evaluate`)."""

from relik_jax.cli import run_main
from relik_jax.cli.evaluate import main

if __name__ == "__main__":
    run_main(main)
