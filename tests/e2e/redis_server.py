"""A real ``redis-server`` for the cluster tests, started by the test on a free port.

It runs in the test's temporary directory and is stopped by its own PID. Tests skip, saying
why, only when ``redis-server`` or the ``coredis`` package is not installed (``.ci/run``
installs the first with apt-get, the ``test`` extra the second).
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import trio

from .harness import LOCALHOST, TIMEOUT, LineLog, _pump, free_port

READY = "Ready to accept connections"


def redis_missing() -> str | None:
    """Why the cluster tests cannot run here, if they cannot."""
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (apt-get install redis-server; .ci/run does)"
    if importlib.util.find_spec("coredis") is None:
        return "coredis is not installed (pip install -e '.[test]')"
    return None


def skip_without_redis() -> None:
    """Skip the calling test, with the reason, when Redis cannot be run here."""
    reason = redis_missing()
    if reason is not None:
        pytest.skip(reason)


class RedisServer:
    """One ``redis-server`` process; :meth:`restart` starts a new one on the same port.

    Args:
        nursery: pumps its output.
        directory: its working directory (where it keeps its append-only file, if any).
        persistent: keep every write in an append-only file, fsynced at once, so a restart
            finds the data again; without it a restart comes back empty.
    """

    def __init__(self, nursery: trio.Nursery, directory: Path, *, persistent: bool) -> None:
        self._nursery = nursery
        self._directory = directory
        self.persistent = persistent
        self.port = free_port()
        self.process: trio.Process | None = None
        self._processes: list[trio.Process] = []
        self.log = LineLog("redis-server")

    @property
    def url(self) -> str:
        """``--cluster``'s argument."""
        return f"redis://{LOCALHOST}:{self.port}/0"

    async def start(self) -> None:
        """Start it and wait until it accepts connections (a killed one is reaped first)."""
        await self.wait_dead()
        options = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else []
        self.log = LineLog("redis-server")
        process = await trio.lowlevel.open_process(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                LOCALHOST,
                "--save",
                "",
                "--dir",
                str(self._directory),
                *(options or ["--appendonly", "no"]),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.process = process
        self._processes.append(process)
        assert process.stdout is not None
        self._nursery.start_soon(_pump, process.stdout, self.log)
        await self.log.expect_line(rx_contains(READY), TIMEOUT)

    def kill(self) -> None:
        """SIGKILL it (by its PID): gone at once, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()

    async def wait_dead(self) -> None:
        """Wait until the killed process has exited."""
        if self.process is not None and self.process.returncode is None:
            with trio.fail_after(TIMEOUT):
                await self.process.wait()

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing answers (a hung or partitioned Redis)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    async def restart(self) -> None:
        """Kill it and start a new one on the same port (empty unless ``persistent``)."""
        self.kill()
        await self.wait_dead()
        await self.start()

    async def aclose(self) -> None:
        """Stop every process started (SIGCONT first, in case one is paused); reap them."""
        with trio.CancelScope(shield=True):
            for process in self._processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGCONT)
                    process.kill()
                with trio.move_on_after(TIMEOUT):
                    await process.wait()
                if process.stdout is not None:
                    await trio.aclose_forcefully(process.stdout)


def rx_contains(text: str) -> re.Pattern[str]:
    """A pattern matching any line that contains ``text``."""
    return re.compile(f".*{re.escape(text)}.*")
