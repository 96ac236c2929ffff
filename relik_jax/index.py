"""`python -m relik_jax.index`: the same as `relik-jax index` (see `relik_jax.cli.index`)."""

from relik_jax.cli import run_main
from relik_jax.cli.index import main

if __name__ == "__main__":
    run_main(main)
