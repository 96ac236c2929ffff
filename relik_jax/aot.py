"""`python -m relik_jax.aot --config=configs/rebel.py --topology=v5e-4`: the same as `relik-jax aot` (see `relik_jax.cli.aot`)."""

from relik_jax.cli.aot import run

if __name__ == "__main__":
    run()
