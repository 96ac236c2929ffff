"""`python -m relik_jax.serve` with a model that fails or stalls on marked texts (for the server tests):
a text containing `<<boom>>` raises inside the model, one containing `<<slow>>` takes 3 s more."""

from __future__ import annotations

import sys
import time

from relik_jax.cli import run_main
from relik_jax.cli.serve import main
from relik_jax.inference.relik import Relik

_read = Relik.read


def faulty_read(self, prepared, **settings):
    texts = [p.text for p in prepared]
    if any("<<boom>>" in t for t in texts):
        raise RuntimeError("injected model failure")
    if any("<<slow>>" in t for t in texts):
        time.sleep(3.0)
    return _read(self, prepared, **settings)


if __name__ == "__main__":
    Relik.read = faulty_read
    sys.argv[0] = "fault_server"
    run_main(main)
