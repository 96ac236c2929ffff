"""`python -m relik_jax.serve` with a model that fails or stalls on marked texts (for the server tests):
a text containing `<<boom>>` raises inside the model, one containing `<<slow>>` takes 3 s more."""

from __future__ import annotations

import sys
import time

from relik_jax.cli import run_main
from relik_jax.cli.serve import main
from relik_jax.inference.relik import Relik

_call = Relik.__call__


def faulty_call(self, texts=None, *args, **kwargs):
    batch = [texts] if isinstance(texts, str) else list(texts or [])
    if any("<<boom>>" in t for t in batch):
        raise RuntimeError("injected model failure")
    if any("<<slow>>" in t for t in batch):
        time.sleep(3.0)
    return _call(self, texts, *args, **kwargs)


if __name__ == "__main__":
    Relik.__call__ = faulty_call
    sys.argv[0] = "fault_server"
    run_main(main)
