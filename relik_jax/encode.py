"""`python -m relik_jax.encode`: the same as `relik-jax encode` (see `relik_jax.cli.encode`)."""

from relik_jax.cli import run_main
from relik_jax.cli.encode import main

if __name__ == "__main__":
    run_main(main)
