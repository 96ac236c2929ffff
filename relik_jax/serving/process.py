"""A server in a child process: start it on a free port, wait for `/ready`, stop it gracefully (for
tests, benchmarks, notebooks).

    with ServerProcess("runs/rebel", ["--max-wait-ms", "5"]) as server:
        httpx.post(server.url + "/annotate", json={"text": "..."})
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ServerProcess:
    """`python -m relik_jax.serve MODEL ARGS` (or `command`, which gets `--port` appended) in a child
    process; its output goes to `log_path`."""

    def __init__(
        self,
        model: str | Path,
        args: Sequence[str] = (),
        *,
        command: Sequence[str] | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        env: dict[str, str] | None = None,
        log_path: str | Path | None = None,
        ready_timeout: float = 600.0,
    ):
        self.host, self.port = host, port or free_port(host)
        self.url = f"http://{host}:{self.port}"
        base = list(command) if command else [sys.executable, "-m", "relik_jax.serve"]
        self.argv = [*base, str(model), *args, "--host", host, "--port", str(self.port)]
        self.env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", **(env or {})}
        if log_path is None:
            fd, log_path = tempfile.mkstemp(prefix="relik-serve-", suffix=".log")
            os.close(fd)
        self.log_path = Path(log_path)
        self.proc: subprocess.Popen | None = None
        self.ready_timeout = ready_timeout

    def start(self) -> ServerProcess:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, Any]:
        """`(status, body)` of a GET (the body parsed when it is JSON); status 0 when nothing listens yet."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
                status, body = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0, None
        try:
            return status, json.loads(body or b"null")
        except ValueError:  # e.g. Ray's proxy before the app is deployed: plain text
            return status, body.decode(errors="replace")

    def wait_ready(self, timeout: float = 600.0) -> float:
        """Seconds until `/ready` answered 200; RuntimeError (with the log's end) if the process
        exits or `timeout` passes first."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            status, _ = self.get("/ready", timeout=2.0)
            if status == 200:
                return time.monotonic() - t0
            time.sleep(0.25)
        raise RuntimeError(f"the server was not ready after {timeout:.0f} s:\n{self.log()[-4000:]}")

    def rss_mb(self) -> float:
        """The server process's resident memory (Linux /proc)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS in /proc (not Linux?)")

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (requests in flight finish), then SIGKILL after `timeout`; the exit status
        (uvicorn exits by re-raising the signal once it has shut down: -15 is a clean stop)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def __enter__(self) -> ServerProcess:
        self.start()
        try:
            self.wait_ready(self.ready_timeout)
        except BaseException:
            self.stop(5)
            raise
        return self

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(Exception):
            self.stop()
