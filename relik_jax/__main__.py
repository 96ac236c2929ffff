"""`python -m relik_jax COMMAND ...`: the same as `relik-jax COMMAND ...`."""

from relik_jax.cli.main import main

main()
