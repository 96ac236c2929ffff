"""HTTP serving of a `Relik` model (`python -m relik_jax.serve`): the FastAPI app (`app`), and the same
app as a Ray Serve deployment for replicas (`ray_app`). Needs the `serve` extra (`ray` for Ray Serve)."""
