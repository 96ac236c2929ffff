"""The command-line entry points (`relik-jax COMMAND`, `python -m relik_jax COMMAND`), thin layers over
the library; what they share: one error handler, logging set-up."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from relik_jax.core.errors import RelikJaxError


def report_error(main: Callable[..., int | None], *args: Any) -> int:
    """Runs `main(*args)`; a `RelikJaxError` (a user mistake) becomes one line on stderr and exit
    status 2, an interrupt exit status 130."""
    try:
        return main(*args) or 0
    except RelikJaxError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def run_main(main: Callable[[], int | None]) -> None:
    """Sets up logging (ours at INFO, JAX's at WARNING), runs `main` through `report_error`, exits."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("jax").setLevel(logging.WARNING)  # "Unable to initialize backend 'tpu'" etc.
    sys.exit(report_error(main))
