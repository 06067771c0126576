"""The local server (``python -m tools serve``) in a subprocess, for the tests and the benchmarks that need
the real one."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.request import urlopen

from tools.server.events import FUNCTION_ROOT


class ServerProcess:
    """``python -m tools serve`` in a subprocess on a free port, for tests and scripts that need the
    real server. Its log (stderr) goes to ``log_path``; ``url`` is None when it did not start listening
    within ``start_timeout`` (the log says why). ``ALPHAPOSE_*`` variables come only from ``env``."""

    def __init__(
        self, env: Mapping[str, str], log_path: Path, *options: str, start_timeout: float = 180.0
    ) -> None:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("ALPHAPOSE_")}
        environ.update(env)
        self.log_path = log_path
        self._log = log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tools", "serve", "--port", "0", *options],
            cwd=FUNCTION_ROOT,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: lines.put(self.process.stdout.readline()), daemon=True).start()
        try:
            first = lines.get(timeout=start_timeout)
        except queue.Empty:
            first = ""
        match = re.match(r"Listening on (http://\S+)", first)
        self.url = match.group(1) if match else None

    def health(self) -> dict[str, Any]:
        """The server's ``GET /`` answer."""
        with urlopen(self.url, timeout=30) as answer:
            return json.load(answer)

    def worker_pids(self) -> list[int]:
        """The worker processes: the server's children started by multiprocessing's spawn."""
        pids = []
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            for pid in (task / "children").read_text().split():
                if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(pid))
        return sorted(pids)

    def log(self) -> str:
        return self.log_path.read_text()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Signal the server and wait for it to exit; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        self.process.stdout.close()
        return self.process.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
