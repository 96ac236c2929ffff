"""The same HTTP app as a Ray Serve deployment: several replicas on one machine or a Ray cluster (the
`ray` extra: `pip install -e '.[ray]'`).

    python -m relik_jax.serve BUNDLE --ray-replicas 2 --port 8000     # ray.init() locally, or the cluster
                                                                      # RAY_ADDRESS points to
Each replica loads the model, warms it up and runs its own batcher; Ray's proxy spreads requests
over them (`/ready` is answered by whichever replica gets it).
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from relik_jax.core.errors import ConfigError
from relik_jax.inference.relik import Relik
from relik_jax.serving.app import ServeOptions, Service, create_app

try:
    import ray  # optional: the `ray` extra
    from ray import serve  # optional: the `ray` extra
except ImportError:  # run() says how to install it
    ray = serve = None

INSTALL_HINT = "Ray Serve replicas need the `ray` extra: pip install -e '.[ray]' (ray[serve])"


def build_app(model: str, dtype: str, load: dict[str, Any], options: ServeOptions):
    """Run on each replica: loads the model and returns its ASGI app (warm-up starts in its lifespan)."""
    relik = Relik.from_pretrained(model, dtype=dtype, **load)
    return create_app(Service(relik, model=str(model), dtype=dtype, options=options))


class Replica:
    """One replica: its app is built in the replica process (`__serve_build_asgi_app__`, Ray Serve's
    late-bound ingress), from the arguments `.bind()` gave."""

    def __init__(self, model: str, dtype: str, load: dict[str, Any], options: ServeOptions):
        self.args = (model, dtype, load, options)

    def __serve_build_asgi_app__(self):
        return build_app(*self.args)


def deployment(model: str, *, dtype: str = "float32", load: dict[str, Any] | None = None,
               options: ServeOptions | None = None, replicas: int = 1, cpus_per_replica: float = 1.0):  # fmt: skip
    """The bound Ray Serve application (`serve.run` it)."""
    if serve is None:
        raise ConfigError(INSTALL_HINT)
    app = serve.deployment(
        serve.ingress()(Replica),
        name="relik_jax",
        num_replicas=replicas,
        ray_actor_options={"num_cpus": cpus_per_replica},
        max_ongoing_requests=256,  # requests are gathered by each replica's batcher
    )
    return app.bind(str(model), dtype, dict(load or {}), options or ServeOptions())


def run(model: str, *, dtype: str, load: dict[str, Any], options: ServeOptions, replicas: int, host: str, port: int,
        cache: str = "") -> int:  # fmt: skip
    """Starts Ray (or joins `RAY_ADDRESS`), serves `replicas` replicas on host:port until interrupted."""
    if serve is None:
        raise ConfigError(INSTALL_HINT)
    if replicas < 1:
        raise ConfigError(f"--ray-replicas must be >= 1, got {replicas}")
    env = {"TOKENIZERS_PARALLELISM": "false"}
    if cache:  # each replica process writes and reads the same persistent XLA cache
        env |= {"JAX_COMPILATION_CACHE_DIR": cache, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    ray.init(runtime_env={"env_vars": env}, ignore_reinit_error=True)
    serve.start(http_options={"host": host, "port": port})
    serve.run(deployment(model, dtype=dtype, load=load, options=options, replicas=replicas), route_prefix="/")
    print(f"Ray Serve: {replicas} replica(s) of {model} on http://{host}:{port} (Ctrl-C stops)", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    serve.shutdown()  # replicas finish the requests they hold (Ray's graceful shutdown)
    ray.shutdown()
    return 0
