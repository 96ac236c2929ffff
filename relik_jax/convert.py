"""`python -m relik_jax.convert`: the same as `relik-jax convert` (see `relik_jax.cli.convert`)."""

from relik_jax.cli import run_main
from relik_jax.cli.convert import main

if __name__ == "__main__":
    run_main(main)
