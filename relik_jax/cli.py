"""What every command-line entry point shares: one-line errors, logging set-up."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from relik_jax.errors import RelikJaxError


def run_main(main: Callable[[], int | None]) -> None:
    """Runs `main`; a `RelikJaxError` (a user mistake) becomes one line on stderr and exit code 2."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("jax").setLevel(logging.WARNING)  # "Unable to initialize backend 'tpu'" etc.
    try:
        code = main()
    except RelikJaxError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
