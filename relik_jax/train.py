"""`python -m relik_jax.train --config=configs/rebel.py`: the same as `relik-jax train` (see `relik_jax.cli.train`)."""

from relik_jax.cli.train import run

if __name__ == "__main__":
    run()
