"""Run inside the sandbox of test_fuzz_live.py: hostile process names (issue 20).

One long-lived process holds a listener, a CLOSE_WAIT and an ESTABLISHED
socket with its fd table nearly full (so the doctor names it in an
fd-exhaustion finding), and renames itself (prctl PR_SET_NAME) to each
generated name on a line from its stdin: a root process may not write another
process's /proc/PID/comm (EINVAL), and a rename costs a pipe round trip, not
a new process. Each example then runs one of the commands that show process
names: every text output must carry the name escaped (model.text.shown) and
no raw control, C1 or bidi character; JSON keeps it exact (its own escapes).
"""

from __future__ import annotations

import os
import subprocess
import sys
import unicodedata
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import FUZZ, check  # noqa: E402
from test_fuzz_live import NAME_EXAMPLES  # noqa: E402

from halfopen.model.text import shown  # noqa: E402

OUT = os.environ.get("HALFOPEN_FUZZ_OUT", "/tmp")

HOLDER = r"""
import ctypes, resource, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(16)
port = srv.getsockname()[1]
a = socket.create_connection(("127.0.0.1", port)); a_in, _ = srv.accept(); a.close()   # CLOSE_WAIT
b = socket.create_connection(("127.0.0.1", port)); b_in, _ = srv.accept()              # ESTABLISHED
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
held = []
try:
    while True:
        held.append(socket.socket())
except OSError:
    pass
held = held[:-2]
out = sys.stdout.buffer
out.write(b"ready\n"); out.flush()
for line in sys.stdin.buffer:
    name = bytes.fromhex(line.decode().strip())
    libc.prctl(15, ctypes.c_char_p(name), 0, 0, 0)   # PR_SET_NAME: 15 bytes, up to a NUL
    out.write(b"ok\n"); out.flush()
"""

# what a terminal obeys: C0 but the newlines between lines, DEL, C1, and the
# format characters (bidi overrides and isolates, zero-width)
def raw_characters(text: str) -> set[str]:
    return {ch for ch in text if ch != "\n" and
            (ord(ch) < 0x20 or 0x7f <= ord(ch) <= 0x9f or unicodedata.category(ch) == "Cf")}


HOSTILE = ["\x1b[2J\x1b]0;PWN\x07", "a\nb", "[/]", "[bold red]x", "$(sh /tmp/a)", "\u202eevil",
           "`id`;rm -rf ~", "[link=x]y[/link]", ":thumbs_up:", "\x9b31m", "%s%n", "\\x1b"]
NAME_TEXT = st.text(alphabet=st.one_of(
    st.characters(max_codepoint=0xA0),  # ASCII, C0, DEL, C1
    st.sampled_from("[]/$()`;|&<>'\"\\ \u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
                    "\u200b\u200d\u200e\u200f\u061c\ufeff\u2028"),
    st.characters()), max_size=15)
NAMES = st.one_of(NAME_TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")),
                  st.binary(max_size=15),  # any bytes: not UTF-8 too
                  st.sampled_from(HOSTILE).map(str.encode))

COMMANDS = [
    ["sockets", "-p"], ["sockets", "-p", "-i"], ["sockets", "-p", "--summary"],
    ["sockets", "-p", "--json"], ["kill", "state", "close-wait"],
    ["watch", "--once", "--no-doctor", "--record", os.path.join(OUT, "names.db")],
    ["doctor", "--window", "0", "-v"], ["doctor", "--window", "0", "--json"],
    ["doctor", "--window", "0", "--nagios"],
]


def kernel_name(raw: bytes) -> str:
    """What /proc/PID/comm gives back for a name set with PR_SET_NAME, as halfopen reads it."""
    return raw.split(b"\0", 1)[0][:15].decode("utf-8", "replace")


@pytest.fixture(scope="module")
def holder() -> Iterator[subprocess.Popen]:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)  # the sandbox's own loopback
    p = subprocess.Popen([sys.executable, "-c", HOLDER], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
    try:
        assert p.stdout is not None and p.stdout.readline() == b"ready\n"
        yield p
    finally:
        p.kill()
        p.wait()


def rename(p: subprocess.Popen, raw: bytes) -> None:
    assert p.stdin is not None and p.stdout is not None
    p.stdin.write(raw.hex().encode() + b"\n")
    p.stdin.flush()
    assert p.stdout.readline() == b"ok\n"


def test_hostile_names(holder):
    @settings(FUZZ, max_examples=NAME_EXAMPLES)
    @given(NAMES, st.sampled_from(COMMANDS))
    def one(raw: bytes, argv: list[str]) -> None:
        rename(holder, raw)
        name = kernel_name(raw)
        code, out, err = check(argv)
        assert not raw_characters(out + err), (raw, argv, out[-2000:], err[-2000:])
        if argv == ["sockets", "-p"]:
            assert f"{shown(name)}({holder.pid},fd=" in out, (raw, out[-2000:])
        if argv[:2] == ["doctor", "--window"] and "--json" not in argv:
            assert f"(pid {holder.pid})" in out, (raw, out[-3000:])  # its fd-exhaustion

    one()
