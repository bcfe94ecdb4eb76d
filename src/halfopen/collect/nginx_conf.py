"""nginx's keepalive settings from `nginx -T`: a reader and a pure parser.

The reader runs `nginx -T` (print the full configuration) only when an nginx
process is running; the parser turns the text into a NginxConf:

    >>> c = parse("http { keepalive_timeout 65s; server { listen 80 so_keepalive=on; } }")
    >>> c.keepalive_timeouts, c.listens[0].port, c.listens[0].so_keepalive
    ([('http', 65.0)], 80, 'on')
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from ..model.nginx import NginxConf, NginxListen
from ..model.snapshot import Snapshot

NGINX_T_TIMEOUT_S = 5.0
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 2592000,
          "y": 31536000}
_TIME = re.compile(r"^(\d+)(ms|s|m|h|d|w|M|y)?$")
_TOKEN = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[{};]|[^\s{};'"#]+|#[^\n]*""")


def parse_time(word: str) -> float:
    """nginx time syntax in seconds: '75' -> 75.0, '1m30s' -> 90.0, '500ms' -> 0.5.

    >>> parse_time("1m30s"), parse_time("500ms"), parse_time("75")
    (90.0, 0.5, 75.0)
    """
    total = 0.0
    for part in re.findall(r"\d+(?:ms|s|m|h|d|w|M|y)?", word):
        m = _TIME.match(part)
        if m is None:  # findall above yields only what _TIME matches
            continue
        total += int(m.group(1)) * _UNITS[m.group(2) or "s"]
    if not re.fullmatch(r"(\d+(ms|s|m|h|d|w|M|y)?)+", word):
        raise ValueError(f"not an nginx time: {word!r}")
    return total


def _port(address: str) -> int | None:
    """'80' -> 80, '[::]:443' -> 443, '10.0.0.1:8080' -> 8080, 'localhost' -> 80, 'unix:/x' -> None."""
    if address.startswith("unix:"):
        return None
    if address.isdigit():
        return int(address)
    tail = address.rsplit(":", 1)
    if len(tail) == 2 and tail[1].isdigit() and not address.endswith("]"):
        return int(tail[1])
    return 80


def parse(text: str) -> NginxConf:
    """The keepalive_timeout values and listen directives of an nginx configuration."""
    conf = NginxConf()
    stack: list[str] = []
    words: list[str] = []
    server_names: list[str] = []
    for tok in _TOKEN.findall(text):
        if tok.startswith("#"):
            continue
        if tok == "{":
            stack.append(" ".join(words[:2]) if words else "?")
            words = []
        elif tok == "}":
            if stack:
                stack.pop()
            words = []
        elif tok == ";":
            if words:
                _directive(conf, stack, words, server_names)
            words = []
        else:
            words.append(tok.strip("'\""))
    return conf


def _directive(conf: NginxConf, stack: list[str], words: list[str], names: list[str]) -> None:
    name, args = words[0], words[1:]
    context = stack[-1] if stack else "main"
    if name == "keepalive_timeout" and args and stack and stack[0] == "http":
        try:
            conf.keepalive_timeouts.append((context, parse_time(args[0])))
        except ValueError:
            pass  # nginx -t would have refused it; nothing to compare
    elif name == "listen" and args and stack and stack[0] == "http":
        so = None
        for a in args[1:]:
            if a.startswith("so_keepalive="):
                so = a.split("=", 1)[1]
        conf.listens.append(NginxListen(args[0], _port(args[0]), so))


def nginx_pids(snapshot: Snapshot, proc: str = "/proc") -> list[int]:
    pids = [p.pid for p in snapshot.processes.values() if p.comm == "nginx"]
    if pids:
        return sorted(pids)
    found = []
    for entry in os.listdir(proc):
        if entry.isdigit():
            try:
                with open(f"{proc}/{entry}/comm") as f:
                    if f.read().strip() == "nginx":
                        found.append(int(entry))
            except OSError:
                continue
    return sorted(found)


def read(snapshot: Snapshot, proc: str = "/proc") -> tuple[NginxConf | None, str]:
    """(conf, "") when nginx runs and `nginx -T` worked; (None, why) or (None, "") if no nginx."""
    pids = nginx_pids(snapshot, proc)
    if not pids:
        return None, ""
    exe = _exe(pids[0], proc) or shutil.which("nginx")
    if exe is None:
        return None, "nginx runs but its binary was not found: keepalive_timeout not checked"
    try:
        out = subprocess.run([exe, "-T"], capture_output=True, text=True,
                             timeout=NGINX_T_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"`nginx -T` failed ({exc}): keepalive_timeout not checked"
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["?"])[-1]
        return None, f"`nginx -T` exited {out.returncode} ({last}): keepalive_timeout not checked"
    conf = parse(out.stdout)
    conf.pids = pids
    return conf, ""


def _exe(pid: int, proc: str) -> str | None:
    try:
        path = os.readlink(f"{proc}/{pid}/exe")
    except OSError:
        return None
    return path if os.path.exists(path) else None
