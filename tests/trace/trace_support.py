"""Running `halfopen trace` as a user does, and the tracefs state the tests restore."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

from tests.helpers import start_halfopen

from halfopen.kernel import tracefs

HERE = os.path.dirname(os.path.abspath(__file__))


def trace_mount() -> str | None:
    return tracefs.mounted_at()


def default_sigint() -> None:
    """In the child: SIGINT as at a terminal. A suite started in the background (`make
    test &`, CI) has it ignored, and an ignored SIGINT stays ignored across exec: the
    Ctrl-C these tests send would then do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Tracing:
    """A `halfopen trace ... --jsonl` process, started and ready (its instance made)."""

    def __init__(self, *args: str) -> None:
        self.proc = start_halfopen("trace", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, preexec_fn=default_sigint)
        self.first_err = []
        assert self.proc.stderr is not None
        for line in self.proc.stderr:  # notes may come first; "tracing" says it is reading
            self.first_err.append(line)
            if "tracing " in line:
                break
        else:
            raise AssertionError(f"halfopen trace did not start: {''.join(self.first_err)}")

    @property
    def instance(self) -> str:
        return f"{tracefs.PREFIX}{self.proc.pid}"

    @property
    def instances(self) -> list[str]:
        """Both of its instances, as `leftover` lists them."""
        return sorted([self.instance, self.instance + tracefs.CLOSE_SUFFIX])

    def stop(self, sig: int = signal.SIGINT, timeout: float = 60) -> tuple[int, str, str]:
        self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, "".join(self.first_err) + err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=30)


def events(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def server(count: int, mode: str) -> tuple[subprocess.Popen, int]:
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "peers.py"), str(count), mode],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    return p, int(p.stdout.readline())


def stop_server(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.kill()
    p.communicate(timeout=30)


def leftover(pids: Iterator[int] | list[int]) -> list[str]:
    """Instances named for these pids that still exist (a reader's two: its events'
    and its close() instance)."""
    where = trace_mount()
    if where is None:
        return []
    names = set(os.listdir(f"{where}/instances"))
    return sorted(n for p in pids for n in (f"{tracefs.PREFIX}{p}", f"{tracefs.PREFIX}{p}{tracefs.CLOSE_SUFFIX}")
                  if n in names)


# A process of the host's, not followed by any trace: close() on /dev/null as fast as
# it can for at most `seconds` (the load that used to overflow the buffer).
_NOISE = """
import os, sys, time
end = time.monotonic() + float(sys.argv[1])
n = 0
try:
    while time.monotonic() < end:
        for _ in range(1000):
            os.close(os.open("/dev/null", os.O_RDONLY))
        n += 1000
except KeyboardInterrupt:  # the test is done: say how many
    pass
print(n, flush=True)
"""


class Noise:
    """`with Noise(seconds) as noise:` a close() loop runs; noise.closes after the block."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.closes = 0
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Noise:
        self.proc = subprocess.Popen([sys.executable, "-c", _NOISE, str(self.seconds)],
                                     stdout=subprocess.PIPE, text=True, preexec_fn=default_sigint)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            out, _ = self.proc.communicate(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.communicate(timeout=30)
        self.closes = int(out) if out.strip() else 0
