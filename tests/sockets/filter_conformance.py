"""The filter language against real ss: one socket set, one corpus, both tools.

Builds sockets in a namespace of its own (every TCP state the kernel gives on
demand, IPv4/IPv6/v4-mapped, boundary ports, several addresses, a link-local
address with a scope, a device-bound and a marked socket), then runs each
corpus expression through `ss -Htan EXPR` inside the namespace and through
`halfopen sockets --json --netns NS EXPR`, and compares the sockets (local
and peer address:port, and state where ss prints it).

Run alone to measure agreement of whatever halfopen is importable, e.g. main's:

    PYTHONPATH=/work/main/src python3 tests/sockets/filter_conformance.py
"""

from __future__ import annotations

import contextlib
import errno
import io
import ipaddress
import json
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from puppet import raw_syn  # noqa: E402

from halfopen.cli.main import main as halfopen_main  # noqa: E402
from halfopen.collect import netns as netns_mod  # noqa: E402

A4, B4, U4 = "198.18.0.1", "198.18.1.1", "198.18.0.2"
A6, B6, U6 = "2001:2::1", "2001:2:0:1::1", "2001:2::2"
LL = "fe80::1"
MARK = 0x10
BOUNDARY = (1, 1023, 1024, 1025, 49151, 49152, 49153, 65535)
SO_MARK = getattr(socket, "SO_MARK", 36)
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)

SS_STATES = {"ESTAB": "established", "SYN-SENT": "syn_sent", "SYN-RECV": "syn_recv",
             "FIN-WAIT-1": "fin_wait1", "FIN-WAIT-2": "fin_wait2", "TIME-WAIT": "time_wait",
             "UNCONN": "close", "CLOSE-WAIT": "close_wait", "LAST-ACK": "last_ack",
             "LISTEN": "listen", "CLOSING": "closing"}


def run(*argv: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} -> {proc.returncode}: {proc.stderr.strip()}")
    return proc


# ------------------------------------------------------------------ the socket set

def make_namespace() -> str:
    name = f"hoF-{uuid.uuid4().hex[:8]}"
    run("ip", "netns", "add", name)
    try:
        ex = ("ip", "netns", "exec", name)
        run(*ex, "ip", "link", "set", "lo", "up")
        run(*ex, "ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1")
        run(*ex, "ip", "link", "set", "v0", "arp", "off", "up")
        run(*ex, "ip", "link", "set", "v1", "up")
        for addr in (f"{A4}/24", f"{B4}/24"):
            run(*ex, "ip", "addr", "add", addr, "dev", "v0")
        for addr in (f"{A6}/64", f"{B6}/64", f"{LL}/64"):
            run(*ex, "ip", "-6", "addr", "add", addr, "dev", "v0", "nodad")
        # the SYN_SENT and SYN_RECV sockets must outlive the run (per-namespace sysctls)
        run(*ex, "sysctl", "-qw", "net.ipv4.tcp_syn_retries=127",
            "net.ipv4.tcp_synack_retries=255")
    except BaseException:
        remove_namespace(name)
        raise
    return name


def remove_namespace(name: str) -> None:
    run("ip", "netns", "del", name, check=False)


# Made inside a cgroup of its own (cgroup2), by a child: its listener, client and
# accepted socket are what `cgroup @CG@` selects.
CGROUP_CHILD = f"""
import socket, sys
sys.stdin.readline()  # moved into the cgroup: sockets made from now on belong to it
lst = socket.socket()
lst.bind(({A4!r}, 8000))
lst.listen()
c = socket.create_connection(({A4!r}, 8000))
a, _ = lst.accept()
print("ready", flush=True)
sys.stdin.read()
"""


@dataclass
class SocketSet:
    netns: str
    socks: list = field(default_factory=list)
    tw_made: float = 0.0
    tw_serial: int = 0
    cgroup: str = ""  # "/NAME" of the set's cgroup, "" without a cgroup2 mount
    cgroup_dir: str = ""
    child: subprocess.Popen | None = None

    def keep(self, s: socket.socket) -> socket.socket:
        self.socks.append(s)
        return s

    def close(self) -> None:
        for s in self.socks:
            with contextlib.suppress(OSError):
                s.close()
        self.socks.clear()
        if self.child is not None:
            with contextlib.suppress(OSError):
                self.child.stdin.close()
            try:
                self.child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.child.kill()
                self.child.wait()
            self.child = None
        if self.cgroup_dir:
            for _ in range(50):  # the cgroup empties a moment after its last process exits
                try:
                    os.rmdir(self.cgroup_dir)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)
            self.cgroup_dir = ""

    def in_cgroup(self) -> None:
        """A child process in the namespace, moved into a new cgroup, makes three sockets."""
        from halfopen.collect import filter_names
        mount = filter_names._cgroup2_mount(filter_names.MOUNTS_FILE)
        if mount is None:
            return
        self.cgroup_dir = os.path.join(mount, self.netns)
        os.mkdir(self.cgroup_dir)
        self.cgroup = "/" + self.netns
        self.child = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, sys.executable, "-c", CGROUP_CHILD],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        with open(os.path.join(self.cgroup_dir, "cgroup.procs"), "w") as f:
            f.write(str(self.child.pid))
        self.child.stdin.write("go\n")
        self.child.stdin.flush()
        if self.child.stdout.readline().strip() != "ready":
            raise RuntimeError("the cgroup child did not make its sockets")

    def entered(self):
        return netns_mod.entered(netns_mod.named(self.netns))

    # -- builders (called inside the namespace)
    def listen(self, addr: str, port: int = 0, *, v6only: bool | None = None,
               opts: tuple = (), backlog: int = 16) -> socket.socket:
        fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        s = self.keep(socket.socket(fam, socket.SOCK_STREAM))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if v6only is not None:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
        for level, opt, value in opts:
            s.setsockopt(level, opt, value)
        s.bind(_sockaddr(addr, port))
        s.listen(backlog)
        return s

    def connect(self, addr: str, port: int, *, bind: tuple | None = None,
                opts: tuple = (), block: bool = True) -> socket.socket:
        fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        s = self.keep(socket.socket(fam, socket.SOCK_STREAM))
        for level, opt, value in opts:
            s.setsockopt(level, opt, value)
        if bind is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(_sockaddr(*bind))
        if block:
            s.settimeout(5)
            s.connect(_sockaddr(addr, port))
        else:
            s.setblocking(False)
            err = s.connect_ex(_sockaddr(addr, port))
            if err not in (0, errno.EINPROGRESS):
                raise OSError(err, os.strerror(err))
        return s

    def pair(self, listener: socket.socket, addr: str, port: int, **kw) -> tuple:
        c = self.connect(addr, port, **kw)
        listener.settimeout(5)
        a, _ = listener.accept()
        return c, self.keep(a)

    def time_wait(self) -> None:
        """Fresh TIME_WAIT sockets (they last 60 s): the client closes first."""
        lst = self.listen(A4, 0)
        lst6 = self.listen(A6, 0)
        for listener, addr in ((lst, A4), (lst6, A6)):
            c, a = self.pair(listener, addr, listener.getsockname()[1])
            c.close()
            time.sleep(0.05)
            a.close()
        self.tw_made = time.monotonic()

    def refresh(self) -> None:
        if time.monotonic() - self.tw_made > 40:
            with self.entered():
                self.time_wait()


def _sockaddr(addr: str, port: int):
    if addr.startswith("fe80"):
        return (addr, port, 0, socket.if_nametoindex("v0"))
    return (addr, port)


def _fill(sender: socket.socket, limit: int = 1 << 24) -> int:
    """Send until the kernel takes no more (the peer's window and our buffer are full)."""
    sender.setblocking(False)
    sent, chunk = 0, b"x" * 65536
    deadline = time.monotonic() + 5
    while sent < limit and time.monotonic() < deadline:
        try:
            sent += sender.send(chunk)
        except BlockingIOError:
            time.sleep(0.05)
            try:
                sent += sender.send(chunk)
            except BlockingIOError:
                return sent
    return sent


def _small(level_opt: int, size: int = 4096) -> tuple:
    return (socket.SOL_SOCKET, level_opt, size)


def build(netns: str) -> SocketSet:
    """Every socket of the set, made inside `netns` by this process."""
    ss = SocketSet(netns)
    try:
        with ss.entered():
            _build(ss)
        ss.in_cgroup()
        return ss
    except BaseException:
        ss.close()
        raise


def _build(ss: SocketSet) -> None:
    lst = {p: ss.listen(A4, p) for p in BOUNDARY}
    lst6 = {p: ss.listen(A6, p) for p in (1, 1024, 49152, 65535)}
    dual = ss.listen("::", 2000, v6only=False)
    ss.listen("0.0.0.0", 2001)
    ss.listen("::", 2002, v6only=True)
    # ESTABLISHED pairs whose ports sit on the boundaries, from two addresses
    ss.pair(lst[1], A4, 1, bind=(B4, 49153))
    ss.pair(lst[65535], A4, 65535)
    ss.pair(lst[49151], A4, 49151, bind=(B4, 1024))
    ss.pair(lst[1023], A4, 1023, bind=(A4, 49152 + 100))
    ss.pair(lst[49153], A4, 49153, bind=(B4, 1))
    ss.pair(lst6[1], A6, 1, bind=(B6, 65535))
    ss.pair(lst6[49152], A6, 49152, bind=(B6, 1023))
    ss.pair(lst6[65535], A6, 65535)
    # v4-mapped: an IPv6 client to the dual-stack listener's IPv4 side
    ss.pair(dual, f"::ffff:{A4}", 2000)
    ss.pair(dual, f"::ffff:{B4}", 2000, bind=(f"::ffff:{B4}", 1025))
    # link-local with a scope, and loopback
    ll = ss.listen(LL, 3000)
    ss.pair(ll, LL, 3000)
    lo4, lo6 = ss.listen("127.0.0.1", 4000), ss.listen("::1", 4000)
    ss.pair(lo4, "127.0.0.1", 4000)
    ss.pair(lo6, "::1", 4000, bind=("::1", 1024))
    # device-bound (SO_BINDTODEVICE): a listener, its accepted socket, a SYN_SENT
    dev = (socket.SOL_SOCKET, SO_BINDTODEVICE, b"v0")
    bound = ss.listen(B4, 5000, opts=(dev,))
    ss.pair(bound, B4, 5000)
    ss.connect(U4, 9, opts=(dev,), block=False)
    # marked (SO_MARK): a listener nobody calls, and two clients
    ss.listen(A4, 6000, opts=((socket.SOL_SOCKET, SO_MARK, 0x3),))
    ss.pair(lst[1024], A4, 1024, opts=((socket.SOL_SOCKET, SO_MARK, MARK),))
    ss.pair(lst6[1024], A6, 1024, opts=((socket.SOL_SOCKET, SO_MARK, MARK | 0x3),))
    # SYN_SENT to on-link addresses nobody answers; SYN_RECV from them
    ss.connect(U4, 9, block=False)
    ss.connect(U6, 9, block=False)
    raw_syn(U4, A4, 1025)
    raw_syn(U6, A6, 1024)
    # CLOSE_WAIT / FIN_WAIT2
    c, _a = ss.pair(lst[1025], A4, 1025)
    c.shutdown(socket.SHUT_WR)
    c6, _a6 = ss.pair(lst6[49152], A6, 49152)
    c6.shutdown(socket.SHUT_WR)
    # FIN_WAIT1: our FIN waits behind data the peer will not read
    small = ss.listen(A4, 7000, opts=(_small(socket.SO_RCVBUF),))
    c, _a = ss.pair(small, A4, 7000, opts=(_small(socket.SO_SNDBUF),))
    _fill(c)
    c.shutdown(socket.SHUT_WR)
    # LAST_ACK: the server's FIN waits behind data the client will not read
    lst_la = ss.listen(A6, 7001)
    c, a = ss.pair(lst_la, A6, 7001, opts=(_small(socket.SO_RCVBUF),))
    a.setsockopt(*_small(socket.SO_SNDBUF))
    c.shutdown(socket.SHUT_WR)
    time.sleep(0.05)
    _fill(a)
    a.shutdown(socket.SHUT_WR)
    # CLOSING: both FINs queued behind data, then one side reads the other's
    lst_cl = ss.listen(A4, 7002, opts=(_small(socket.SO_RCVBUF),))
    c, a = ss.pair(lst_cl, A4, 7002, opts=(_small(socket.SO_RCVBUF), _small(socket.SO_SNDBUF)))
    a.setsockopt(*_small(socket.SO_SNDBUF))
    _fill(c)
    _fill(a)
    c.shutdown(socket.SHUT_WR)
    a.shutdown(socket.SHUT_WR)
    c.setblocking(False)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if not c.recv(1 << 20):
                break
        except BlockingIOError:
            time.sleep(0.02)
    ss.time_wait()
    time.sleep(0.2)


# ------------------------------------------------------------------ the two tools

Key = tuple  # (local addr, local port, peer addr, peer port)


def _endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    host = host.split("%", 1)[0]
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host == "*":
        host = "::"
    return str(ipaddress.ip_address(host)), 0 if port == "*" else int(port)


def run_ss(netns: str, expr: str) -> tuple[int, dict[Key, str], str]:
    """ss -Htan EXPR in the namespace: (exit code, {key: state or ""}, stderr).

    Entered with nsenter, which changes the network namespace only: under
    `ip netns exec` (a fresh /sys) ss finds no cgroup2 mount and refuses every
    `cgroup` word (halfopen does not: test_filter_conformance checks that).
    """
    words = expr.split()
    proc = run("nsenter", f"--net=/run/netns/{netns}", "ss", "-Htan", "--", *words,
               check=False)
    if proc.returncode != 0:
        return proc.returncode, {}, proc.stderr.strip().splitlines()[0:1]
    rows: dict[Key, str] = {}
    for line in proc.stdout.splitlines():
        f = line.split()
        if not f:
            continue
        state = ""
        if not f[0].isdigit():  # ss drops the State column for a single state
            state = SS_STATES.get(f[0], f[0])
            f = f[1:]
        (la, lp), (pa, pp) = _endpoint(f[2]), _endpoint(f[3])
        rows[(la, lp, pa, pp)] = state
    return 0, rows, ""


def run_halfopen(netns: str, expr: str, source: str = "auto") -> tuple[int, dict[Key, str], str]:
    """`halfopen sockets --json --netns NS EXPR`, through the CLI's own main()."""
    out, err = io.StringIO(), io.StringIO()
    argv = ["sockets", "--json", "--netns", netns, "--source", source, "--", *expr.split()]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = halfopen_main(argv)
    if code:
        return code, {}, err.getvalue().strip()
    rows = {}
    for s in json.loads(out.getvalue())["sockets"]:
        key = (str(ipaddress.ip_address(s["local_addr"])), s["local_port"],
               str(ipaddress.ip_address(s["peer_addr"])), s["peer_port"])
        rows[key] = s["state"]
    return 0, rows, err.getvalue().strip()


@dataclass
class Outcome:
    expr: str
    source: str
    verdict: str  # "same", "both-rejected", "documented", "differ"
    detail: str = ""

    @property
    def agrees(self) -> bool:
        return self.verdict in ("same", "both-rejected")


SOCK_DIAG_ONLY = "need sock_diag"  # halfopen's refusal of dev/fwmark/... on /proc


def _verdict(expr: str, source: str, ss_res: tuple, ho_res: tuple) -> Outcome:
    (ss_code, ss_rows, ss_err), (ho_code, ho_rows, ho_err) = ss_res, ho_res
    if ss_code and ho_code == 64:
        return Outcome(expr, source, "both-rejected", ho_err)
    if ho_code == 3 and SOCK_DIAG_ONLY in ho_err and source == "procfs":
        return Outcome(expr, source, "documented", "needs sock_diag")
    if ss_code or ho_code:
        detail = (f"ss exit {ss_code} {ss_err}" if ss_code else
                  f"halfopen exit {ho_code}: {ho_err}")
    else:
        wrong_state = [k for k, st in ss_rows.items()
                       if st and k in ho_rows and ho_rows[k] != st]
        if set(ss_rows) == set(ho_rows) and not wrong_state:
            return Outcome(expr, source, "same", f"{len(ss_rows)} sockets")
        detail = (f"ss only {sorted(set(ss_rows) - set(ho_rows))[:3]}, halfopen only "
                  f"{sorted(set(ho_rows) - set(ss_rows))[:3]}, states {wrong_state[:3]}")
    if expr in SS_BUGS:
        return Outcome(expr, source, "documented", SS_BUGS[expr])
    if not ss_code and _empty_state_set(expr):
        return Outcome(expr, source, "documented", "an empty state set: ss shows every socket")
    return Outcome(expr, source, "differ", detail)


def _empty_state_set(expr: str) -> bool:
    """The leading state/exclude words select no state (ss then shows all)."""
    from halfopen.model.states import ALL_STATES, STATE_WORDS
    words, mask = expr.split(), None
    while len(words) >= 2 and words[0] in ("state", "exclude", "excl"):
        states = STATE_WORDS.get(words[1].lower(), 0)
        mask = ((mask or 0) | states if words[0] == "state"
                else (ALL_STATES | 1 if mask is None else mask) & ~states)
        words = words[2:]
    return mask is not None and mask & ~1 == 0


def compare(sockets: SocketSet, expr: str, sources: tuple = ("auto", "procfs"),
            tries: int = 2) -> list[Outcome]:
    """One expression through ss once and halfopen once per source; a differing
    answer is asked once more (a TIME_WAIT socket may expire between reads)."""
    if "@CG@" in expr:
        if not sockets.cgroup:
            return []
        expr = expr.replace("@CG@", sockets.cgroup)
    out = []
    for source in sources:
        for attempt in range(tries):
            if attempt or not out:
                sockets.refresh()
                ss_res = run_ss(sockets.netns, expr)
            outcome = _verdict(expr, source, ss_res, run_halfopen(sockets.netns, expr, source))
            if outcome.verdict != "differ":
                break
        out.append(outcome)
    return out


# ------------------------------------------------------------------ the corpus

# iproute2 testsuite/tests/ss/ssfilter.t, verbatim, then with this set's addresses
SSFILTER_T = [
    "dport = 22", "dport 22", "( dport = 22 )", "src = 0.0.0.0", "src 0.0.0.0",
    "src 0.0.0.0 sport = 22", "src 0.0.0.0 and sport = 22",
    "src 10.0.0.1 and sport = 22 and dport = 50312",
    "src 10.0.0.1 and sport = 22 and ( dport = 50312 )",
    "src 10.0.0.1 and ( sport = 22 and dport = 50312 )",
    "( src 10.0.0.1 and sport = 22 ) and dport = 50312",
    "( src 0.0.0.0 or src 10.0.0.1 ) and dst 10.0.0.2",
]
SSFILTER_T_HERE = [e.replace("10.0.0.1", A4).replace("10.0.0.2", B4).replace("50312", "49153")
                   .replace("22", "1") for e in SSFILTER_T]
# ss(8): the TCP examples and the predicates' own examples
SS8 = [
    "", "state established ( dport = :ssh or sport = :ssh )",
    "state fin-wait-1 ( sport = :http or sport = :https ) dst 193.233.7/24",
    "state fin-wait-1", "fwmark = 0x01/0x03", "autobound", "dev v0", "dev = lo",
    "cgroup /", "sport = :1024", "dport != :1024", "src 198.18.0.1:1024",
    "dst [2001:2::1]:1024", "sport = inet6::1024", "state connected", "state synchronized",
    "state bucket", "state big", "state all", "exclude listening",
]
# one case (or a few) per item of issue 12
ISSUE = [
    # 1. precedence: one level, left to right
    "sport = :1 or sport = :1024 and dport = :49153",
    "sport = :1 or sport = :1024 and dport = :49153 or dport = :1",
    "sport = :1 and sport = :1024 or dport = :49153",
    "src 198.18.1.1 or src 2001:2:0:1::1 dport = :1 or dport = :65535",
    # 2. a run of state/exclude words is one set
    "state established state listening", "state listening state time-wait sport = :1",
    "exclude listening exclude established", "state established exclude established",
    "exclude established state established", "state close-wait state fin-wait-2 dport = :1025",
    # 3. ports as strtoul(.., 0)
    "sport = 026", "sport = 0x401", "sport = +1025", "dport = 0177777", "sport >= 0xBFFF",
    "sport = 08", "sport = ²", "sport = 0x", "sport = 1e3",
    # 4. unbracketed IPv6 with a port
    "src 2001:2::1:1024", "dst 2001:2::1:49152", "src 2001:2::1", "src ::1:1024",
    "dst 2001:2::/64", "dst 2001:2::/64:1024", "src ::ffff:198.18.0.1:2000",
    # 5. words ss has and halfopen lacked
    "dev v0", "dev != v0", "dev lo", "dev 1", "dev nosuchdev", "fwmark 0x10", "fwmark 0x10/0x10",
    "fwmark != 0x10", "fwmark 0x3/0x3", "fwmark 0/0", "fwmark x", "cgroup /", "not cgroup /",
    "cgroup /nosuch-cgroup", "autobound", "not autobound", "src inet:198.18.0.0/15",
    "src inet6:2001:2::/48", "sport = inet::1024", "sport = inet6::1024", "src inet6:1.2.3.4",
    "dst 198.18/15", "src 127.0.0/24", "dst 193.233.7/24", "src 198.18.0.1:*", "sport = :*",
    "sport = :", "src *:1024", "src *", "src localhost", "src localhost:4000", "src any",
    "src all:1024", "dst default", "excl listening", "state unconnected", "state syn-rcv",
    "state unknown", "state UNKNOWN", "exclude unknown", "state LISTENING",
    # rejected by ss
    "( )", "not", "sport", "sport >", "src 1.2.3.4 or", "src 1.2.3.256", "src [::1]x",
    "dport = [::1]:22", "src 1.2.3.4/33", "src ::", "dev", "cgroup", "state bogus",
    "sport = 22:", "src *1.2.3.4", "src 1.2.3.4/08",
]
# one case (or a few) per item of issue 20's filter part
ISSUE20 = [
    # 1. an operator without its value: ss's syntax error
    "sport = :1 or sport =", "sport =", "dport >=", "src", "dst", "src or sport = :1",
    "( sport = )", "sport = :1 and dst", "dport >= or sport = :1", "sport != )", "dev =",
    "fwmark", "fwmark = or dport = :1", "cgroup = )", "not sport <", "sport = :1 dport",
    # 2. ::/0 is IPv6 (and v4-mapped) only; 0.0.0.0/0 is IPv4 and v4-mapped
    "src ::/0", "dst ::/0", "src ::/0:1024", "dst ::/0:*", "src inet6:::/0", "not src ::/0",
    "src ::/0 or sport = :1", "src ::/16", "dst ::/96", "src 0.0.0.0/0", "dst 0.0.0.0/0:1",
    "src 0/0", "not dst 0.0.0.0/0", "src 0.0.0.0/0 and src ::/0",
    # 3. autobound as ss's two matchers read it
    "not autobound", "state listening ! autobound", "not autobound and sport = :1024",
    "autobound or sport = :1", "not ( autobound or dport = :1 )",
    "not autobound or src 198.18.0.1", "not ( autobound and dport = :1024 )",
    "state established not autobound",
    # 4. ports outside 0-65535, as ss reads and compares them
    "sport = 70000", "sport >= :*", "sport = :-1", "sport != :-1", "sport > :-1",
    "sport >= :-1", "dport < :65536", "sport <= :70000", "sport >= :70000",
    "not sport >= :70000", "sport >= :-64511", "dport <= :-64511", "sport = :2147483647",
    "sport = :-2147483648", "sport = :2147483648", "src 198.18.0.1:-1", "src 198.18.0.1:70000",
    "dport = 0x10001", "sport <= :*", "sport > :*", "dport < :*", "sport >= :131071",
    "not ( sport > :-1 or dport < :65537 )", "dport = -2", "sport <= 0x1ffff",
    # 5. cgroup PATH (@CG@: a cgroup of the set, three sockets made inside it)
    "cgroup @CG@", "not cgroup @CG@", "cgroup @CG@ or sport = :1", "cgroup != @CG@",
    "state listening cgroup @CG@", "cgroup @CG@/nosuch", "cgroup = @CG@ and dport = :8000",
]
# where ss contradicts its manual and the kernel: documented in docs/filter.md
SS_BUGS = {
    "state established exclude established": "an empty state set: ss shows every socket",
    "not src 0.0.0.0/8": "ss's userspace check compares IPv6 addresses with an IPv4 prefix",
    "not dst 0.0.0.0": "ss's userspace check compares IPv6 addresses with an IPv4 prefix",
    "fwmark 1x": "ss's sscanf takes trailing garbage",
    "autobound dev v0": "without bytecode ss skips the kernel's port-lock test",
    "cgroup /": "ss's `cgroup /` asks for the handle of an empty path and matches nothing",
    "not cgroup /": "ss's `cgroup /` matches nothing; under not ss also drops mini sockets",
}

PORT_SPELLINGS = {1: ["1", ":1", "01", "0x1"], 1023: [":1023", "01777", "0x3ff"],
                  1024: [":1024", "1024", "0x400", "+1024"], 1025: [":1025", "02001"],
                  49151: [":49151", "0xbfff"], 49152: [":49152", "0140000"],
                  49153: [":49153", "+49153"], 65535: [":65535", "0xffff", "0177777"]}
HOSTS = [A4, B4, f"{A4}/24", "198.18/15", "198.18.0/23", f"[{A6}]", "2001:2::/48",
         f"[{B6}]", "2001:2:0:1::/64", f"[::ffff:{A4}]", "127.0.0.1", "[::1]", "localhost",
         "any", "127/8", "[fe80::1]", "fe80::/10"]
JOINS = ["and", "or", "&&", "||", "&", "|", ""]


def _atom(rng: random.Random, with_dev: bool, negated: bool) -> str:
    """One predicate. `autobound` only where no `not` reaches it, and no
    `dev` with it: there ss's two matchers disagree (SS_BUGS)."""
    kind = rng.random()
    if kind < 0.4:
        port = rng.choice(list(PORT_SPELLINGS))
        spelled = rng.choice(PORT_SPELLINGS[port])
        op = rng.choice(["", "=", "==", "eq", "!=", "ne", "<", ">", "<=", ">=", "lt", "geq"])
        return " ".join(w for w in (rng.choice(["sport", "dport"]), op, spelled) if w)
    if kind < 0.85:
        host = rng.choice(HOSTS)
        if rng.random() < 0.3 and not host.startswith("fe80::/") and "/" not in host:
            host = f"{host}:{rng.choice(list(PORT_SPELLINGS))}"
        elif rng.random() < 0.1:
            host = f"*:{rng.choice(list(PORT_SPELLINGS))}"
        return " ".join(w for w in (rng.choice(["src", "dst"]), rng.choice(["", "="]), host)
                        if w)
    if kind < 0.9:
        return rng.choice(["fwmark 0x10", "fwmark 0x10/0x10", "fwmark != 0x3/0x3",
                           "fwmark 0"])
    if kind < 0.95:
        if with_dev:
            return rng.choice(["dev v0", "dev != v0", "dev lo"])
        return "sport = :*" if negated else "autobound"
    return rng.choice(["sport = :*", "dst *", "src any", "sport = inet6::1024"])


def _tree(rng: random.Random, depth: int, with_dev: bool, negated: bool = False) -> str:
    if depth == 0 or rng.random() < 0.3:
        return _atom(rng, with_dev, negated)
    shape = rng.random()
    if shape < 0.15:
        return f"{rng.choice(['not', '!'])} {_tree(rng, depth - 1, with_dev, True)}"
    n = rng.randint(2, 4)
    parts = [_tree(rng, depth - 1, with_dev, negated) for _ in range(n)]
    text = parts[0]
    for p in parts[1:]:
        join = rng.choice(JOINS)
        text = f"{text} {join} {p}" if join else f"{text} {p}"
    return f"( {text} )" if rng.random() < 0.6 else text


def generated(count: int = 600, seed: int = 12) -> list[str]:
    rng = random.Random(seed)
    out = []
    states = ["established", "listening", "time-wait", "syn-recv", "connected", "bucket",
              "close-wait", "fin-wait-1"]
    while len(out) < count:
        with_dev = rng.random() < 0.3
        plain = rng.random() < 0.6  # no word /proc cannot answer: the procfs run compares too
        expr = _tree(rng, rng.randint(1, 4), with_dev)
        if plain and any(w in expr for w in ("dev", "fwmark", "autobound")):
            continue
        if rng.random() < 0.2:
            run_ = " ".join(f"{rng.choice(['state', 'exclude', 'excl'])} {rng.choice(states)}"
                            for _ in range(rng.randint(1, 2)))
            expr = f"{run_} {expr}"
        if expr.startswith(("and", "or")):
            continue
        out.append(expr)
    return out


def corpus() -> list[str]:
    seen, out = set(), []
    for e in SSFILTER_T + SSFILTER_T_HERE + SS8 + ISSUE + ISSUE20 + list(SS_BUGS) + generated():
        if e not in seen:
            seen.add(e)
            out.append(e)
    return out


def measure(sockets: SocketSet, exprs: list[str],
            sources: tuple = ("auto", "procfs")) -> list[Outcome]:
    return [o for e in exprs for o in compare(sockets, e, sources)]


def summary(outcomes: list[Outcome], source: str) -> str:
    mine = [o for o in outcomes if o.source == source]
    agree = sum(o.agrees for o in mine)
    documented = sum(o.verdict == "documented" for o in mine)
    return (f"source={source}: {agree}/{len(mine)} agree "
            f"({100 * agree / max(1, len(mine)):.1f} %), {documented} documented differences, "
            f"{len(mine) - agree - documented} other")


if __name__ == "__main__":
    ns = make_namespace()
    sset = None
    try:
        sset = build(ns)
        outcomes = measure(sset, corpus())
        for source in ("auto", "procfs"):
            print(summary(outcomes, source), flush=True)
        for o in outcomes:
            if o.verdict == "differ" and "-v" in sys.argv:
                print(f"  [{o.source}] {o.expr!r}: {o.detail}")
    finally:
        if sset is not None:
            sset.close()
        remove_namespace(ns)
