"""Running `leadrelay run` as real processes: sandboxes on loopback, a config file, agents with log files,
and waiting on conditions with a deadline (never a fixed sleep)."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from connectors.sandbox import HubSpotSandbox, generate_dataset, serve_on_loopback

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-token"
SECRET_ENV = "LR_TEST_WEBHOOK_SECRET"
T = TypeVar("T")


def wait_for(condition: Callable[[], T], what: str, *, timeout: float = 30.0, every: float = 0.05) -> T:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


@contextlib.contextmanager
def sandboxes(names: list[str], contacts: int = 120, seed: int = 5) -> Iterator[dict[str, tuple[HubSpotSandbox, str]]]:
    """A seeded HubSpot sandbox per name, each on its own loopback port: name -> (sandbox, base URL)."""
    with contextlib.ExitStack() as stack:
        out = {}
        for i, name in enumerate(names):
            sandbox = HubSpotSandbox(token=TOKEN)
            sandbox.load(generate_dataset(seed=seed + i, contacts=contacts, now=datetime.now(UTC)))
            out[name] = (sandbox, stack.enter_context(serve_on_loopback(sandbox.app)))
        yield out


def write_config(path: Path, *, store_url: str, model_dir: Path, connections: Mapping[str, str],
                 pipelines: Mapping[str, Mapping[str, Any]], daemon: Mapping[str, Any]) -> Path:
    """A TOML config: one HubSpot connection per (name -> base URL), the given pipelines and [daemon]."""
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = ["[store]", f"url = {value(store_url)}", "", "[scoring]", f"model_dir = {value(str(model_dir))}", "",
             "[daemon]", *(f"{k} = {value(v)}" for k, v in daemon.items()), ""]
    for name, url in connections.items():
        lines += [f"[connections.{name}]", 'type = "hubspot"', f"token = {value(TOKEN)}", f"base_url = {value(url)}",
                  "rate_limit_requests = 100000", ""]
    for name, options in pipelines.items():
        lines += [f"[pipelines.{name}]", *(f"{k} = {value(v)}" for k, v in options.items()), ""]
    path.write_text("\n".join(lines))
    return path


class Agent:
    """One `leadrelay run` process; its output goes to a log file."""

    def __init__(self, config: Path, log: Path, agent_id: str, env: Mapping[str, str] | None = None) -> None:
        self.log = log
        self.agent_id = agent_id
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sync.cli", "-c", str(config), "run", "--agent-id", agent_id],
            cwd=ROOT, stdout=self._out, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def url(self, timeout: float = 60.0) -> str:
        def found() -> str | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"agent {self.agent_id} exited with {self.proc.returncode}:\n{self.text()}")
            match = re.search(r"listening on (http://\S+)", self.text())
            return match.group(1) if match else None

        return wait_for(found, f"agent {self.agent_id} to listen", timeout=timeout)

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._out.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._out.close()
