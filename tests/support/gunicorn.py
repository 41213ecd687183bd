"""Run the service under a real gunicorn, as it is deployed, on a free port."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import requests

from tests.support.services import free_port

ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def compile_optimized_bytecode() -> None:
    """Write the `.opt-2.pyc` files that PYTHONOPTIMIZE=2 workers load, as the Dockerfile's build does.

    Where PYTHONDONTWRITEBYTECODE is set, nothing writes them otherwise: every worker would compile
    every module at import, which starts it slower and leaves it larger than -OO saves. Once per
    process; up-to-date files are skipped (under a second).
    """
    sources = [sysconfig.get_paths()["purelib"], *(str(ROOT / name) for name in ("appfactory", "blueprints"))]
    command = [sys.executable, "-OO", "-m", "compileall", "-q", "-j", "0", *sources]
    subprocess.run(command, cwd=ROOT, capture_output=True, timeout=300, check=False)


class Gunicorn:
    """`gunicorn -c gunicorn.conf.py wsgi:app` with the given environment; output kept in a file."""

    def __init__(self, env: dict[str, str], workers: int | None = 2, app: str = "wsgi:app") -> None:
        """`workers=None` leaves WEB_CONCURRENCY unset: the service's own default."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "PORT": str(self.port),
            "WEB_CONCURRENCY": str(workers),
            "PYTHONOPTIMIZE": "2",  # as the Dockerfile runs it: no docstrings in the workers' memory
            # Generation without a key unless a test says otherwise (tests/identity/ does).
            "AI_ALLOW_ANONYMOUS": "true",
            **env,
        }
        if workers is None:
            del self.env["WEB_CONCURRENCY"]
        self.app = app
        self.output = tempfile.NamedTemporaryFile(prefix="gunicorn-", suffix=".log", delete=False)
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> Gunicorn:
        compile_optimized_bytecode()
        command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", self.app]
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=self.output, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n{self.log()}")
            try:
                if requests.get(f"{self.url}/health/live", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"gunicorn did not answer within {timeout}s:\n{self.log()}")

    def worker_pids(self) -> set[int]:
        """The master's children now: its workers (and a schema follower while one runs)."""
        children = set()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == self.process.pid:
                        children.add(int(entry))
            except (OSError, IndexError, ValueError):
                continue
        return children

    def log(self) -> str:
        return Path(self.output.name).read_text(errors="replace")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def close(self) -> None:
        """Stop the server and remove its log file."""
        self.stop()
        if not self.output.closed:
            self.output.close()
            os.unlink(self.output.name)

    def __enter__(self) -> Gunicorn:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc) -> None:
        self.close()
