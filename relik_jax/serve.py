"""`python -m relik_jax.serve`: the same as `relik-jax serve` (see `relik_jax.cli.serve`)."""

from relik_jax.cli import run_main
from relik_jax.cli.serve import main

if __name__ == "__main__":
    run_main(main)
