"""Socket filters: ss's words (misc/ssfilter.y) plus pid, comm, uid and container.

A filter is a value: an expression tree parsed from the command line. It is
run in userspace by `matches()` and, where the kernel can run it, compiled to
inet_diag bytecode by halfopen.collect.bytecode.

    state close-wait and dport = :443
    sport >= :1024 and not ( dst 10.0.0.0/8 or dst [::1] )
    state established pid 812          (juxtaposition means "and", as in ss)
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from typing import Union

from halfopen.records import record

from ..errors import UsageError
from .socket import Socket
from .states import ALL_STATES, STATE_WORD_NAMES, STATE_WORDS

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


@record(frozen=True)
class StateIs:
    mask: int  # bit (1 << TcpState) per state


@record(frozen=True)
class PortCmp:
    side: str  # "s" (local) or "d" (peer)
    op: str  # one of "eq", "ne", "ge", "le", "gt", "lt"
    port: int


@record(frozen=True)
class HostIs:
    side: str
    network: Network | None  # None: any address
    port: int | None  # None: any port


@record(frozen=True)
class OwnerIs:
    key: str  # "pid", "comm", "uid" or "container" (name, pod, ns/pod, id or id prefix)
    value: int | str


@record(frozen=True)
class And:
    left: Expr
    right: Expr


@record(frozen=True)
class Or:
    left: Expr
    right: Expr


@record(frozen=True)
class Not:
    inner: Expr


Expr = Union[StateIs, PortCmp, HostIs, OwnerIs, And, Or, Not]

OPERATORS = {"=": "eq", "==": "eq", "eq": "eq", "!=": "ne", "ne": "ne", "neq": "ne",
             ">=": "ge", "ge": "ge", "geq": "ge", "<=": "le", "le": "le", "leq": "le",
             ">": "gt", "gt": "gt", "<": "lt", "lt": "lt"}
LEAF_WORDS = ("state", "exclude", "sport", "dport", "src", "dst", "pid", "comm", "uid",
              "container")
JOIN_WORDS = {"and": "and", "&&": "and", "&": "and", "or": "or", "||": "or", "|": "or",
              "not": "not", "!": "not"}
VALID_WORDS = ", ".join(LEAF_WORDS + ("and", "or", "not", "(", ")"))

_TOKEN = re.compile(r"\(|\)|>=|<=|!=|==|&&|\|\||[=<>&|]|!(?!=)|[^\s()=<>!&|]+")


def tokenize(words: Iterable[str]) -> list[str]:
    """Split command-line words into filter tokens.

    >>> tokenize(["dport>=:1024", "and", "(src", "10.0.0.0/8)"])
    ['dport', '>=', ':1024', 'and', '(', 'src', '10.0.0.0/8', ')']
    """
    return _TOKEN.findall(" ".join(words))


@record(frozen=True)
class Filter:
    """A parsed filter; `expr` None means every socket."""

    expr: Expr | None
    text: str = ""

    @property
    def needs_owners(self) -> bool:
        return self.expr is not None and _any_leaf(self.expr, lambda e: isinstance(e, OwnerIs)
                                                   and e.key != "uid")

    def required_pids(self) -> frozenset[int] | None:
        """The pids a match must belong to, when the filter pins them ("pid N and ...").

        Lets the owner scan read only those processes' fds.
        """
        if self.expr is None:
            return None
        pids = None
        for conjunct in _conjuncts(self.expr):
            if isinstance(conjunct, OwnerIs) and conjunct.key == "pid":
                this = frozenset((int(conjunct.value),))
                pids = this if pids is None else pids & this
        return pids

    @property
    def is_empty(self) -> bool:
        return self.expr is None

    def matches(self, sock: Socket) -> bool:
        return self.expr is None or _eval(self.expr, sock)

    def predicate(self) -> Callable[[Socket], bool]:
        expr = self.expr
        if expr is None:
            return lambda _s: True
        return lambda s: _eval(expr, s)


def parse(words: Iterable[str]) -> Filter:
    """Parse ss-style filter words; raise UsageError naming the bad word."""
    words = list(words)
    tokens = tokenize(words)
    if not tokens:
        return Filter(None, "")
    parser = _Parser(tokens)
    expr = parser.parse_or()
    if parser.pos != len(tokens):
        bad = tokens[parser.pos]
        raise UsageError(f"unexpected filter word {bad!r}; valid words: {VALID_WORDS}")
    return Filter(expr, " ".join(words))


class _Parser:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, what: str) -> str:
        tok = self.peek()
        if tok is None:
            raise UsageError(f"filter ends early: {what} expected")
        self.pos += 1
        return tok

    def parse_or(self) -> Expr:
        left = self.parse_and()
        while JOIN_WORDS.get(self.peek() or "") == "or":
            self.pos += 1
            left = Or(left, self.parse_and())
        return left

    def parse_and(self) -> Expr:
        left = self.parse_unary()
        while True:
            tok = self.peek()
            if tok is None or tok == ")" or JOIN_WORDS.get(tok) == "or":
                return left
            if JOIN_WORDS.get(tok) == "and":
                self.pos += 1
            left = And(left, self.parse_unary())

    def parse_unary(self) -> Expr:
        tok = self.take("a filter word")
        if JOIN_WORDS.get(tok) == "not":
            return Not(self.parse_unary())
        if tok == "(":
            inner = self.parse_or()
            if self.take("')'") != ")":
                raise UsageError("unbalanced '(' in filter")
            return inner
        return self.parse_leaf(tok)

    def parse_leaf(self, word: str) -> Expr:
        word = word.lower()
        if word in ("state", "exclude"):
            name = self.take("a state name").lower()
            if name not in STATE_WORDS:
                raise UsageError(f"unknown state {name!r}; valid states: "
                                 + ", ".join(STATE_WORD_NAMES))
            mask = STATE_WORDS[name]
            return StateIs(mask if word == "state" else ALL_STATES & ~mask)
        if word in ("sport", "dport"):
            op = "eq"
            if (self.peek() or "").lower() in OPERATORS:
                op = OPERATORS[self.take("an operator").lower()]
            return PortCmp(word[0], op, parse_port(self.take("a port")))
        if word in ("src", "dst"):
            negate = False
            if self.peek() in ("=", "==", "eq"):
                self.pos += 1
            elif self.peek() in ("!=", "ne", "neq"):
                self.pos += 1
                negate = True
            network, port = parse_host(self.take("an address"))
            leaf: Expr = HostIs(word[0], network, port)
            return Not(leaf) if negate else leaf
        if word in ("pid", "uid"):
            value = self.take(f"a {word} number")
            if not value.isdigit():
                raise UsageError(f"{word} wants a number, not {value!r}")
            return OwnerIs(word, int(value))
        if word == "comm":
            return OwnerIs("comm", self.take("a process name"))
        if word == "container":
            return OwnerIs("container", self.take("a container name, pod or id"))
        raise UsageError(f"unknown filter word {word!r}; valid words: {VALID_WORDS}")


def parse_port(text: str) -> int:
    """':443', '443' or ':https' -> 443."""
    name = text[1:] if text.startswith(":") else text
    if name.isdigit() and int(name) <= 65535:
        return int(name)
    try:
        return socket.getservbyname(name, "tcp")
    except OSError:
        raise UsageError(f"bad port {text!r}: a number 0-65535 or a service name") from None


def parse_host(text: str) -> tuple[Network | None, int | None]:
    """'10.0.0.0/8', '10.1.2.3:80', '[::1]:443', '[2001:db8::]/32', ':80', '*:80'."""
    addr, port = text, None
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise UsageError(f"bad address {text!r}: missing ']'")
        addr, rest = text[1:close], text[close + 1:]
        if rest.startswith("/"):
            addr, rest = addr + rest.split(":", 1)[0], (":" + rest.split(":", 1)[1]
                                                        if ":" in rest else "")
        if rest.startswith(":"):
            port = parse_port(rest)
        elif rest:
            raise UsageError(f"bad address {text!r}")
    elif text.count(":") == 1:  # IPv4 with port, or ':port'
        addr, port_text = text.split(":")
        port = parse_port(port_text)
    if addr in ("", "*"):
        return None, port
    try:
        return ipaddress.ip_network(addr, strict=False), port
    except ValueError:
        raise UsageError(f"bad address {text!r}: an IPv4/IPv6 address or prefix, "
                         "e.g. 10.0.0.0/8 or [::1]:80") from None


def _conjuncts(expr: Expr) -> list[Expr]:
    if isinstance(expr, And):
        return _conjuncts(expr.left) + _conjuncts(expr.right)
    return [expr]


def _any_leaf(expr: Expr, test: Callable[[Expr], bool]) -> bool:
    if isinstance(expr, (And, Or)):
        return _any_leaf(expr.left, test) or _any_leaf(expr.right, test)
    if isinstance(expr, Not):
        return _any_leaf(expr.inner, test)
    return test(expr)


_CMP = {"eq": int.__eq__, "ne": int.__ne__, "ge": int.__ge__, "le": int.__le__,
        "gt": int.__gt__, "lt": int.__lt__}


def _host_matches(leaf: HostIs, addr: str, port: int) -> bool:
    if leaf.port is not None and leaf.port != port:
        return False
    if leaf.network is None:
        return True
    ip = ipaddress.ip_address(addr)
    if ip.version == 6 and leaf.network.version == 4 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # as the kernel does for v4-mapped (inet_diag_bc_run)
    return ip.version == leaf.network.version and ip in leaf.network


def _eval(expr: Expr, s: Socket) -> bool:
    if isinstance(expr, And):
        return _eval(expr.left, s) and _eval(expr.right, s)
    if isinstance(expr, Or):
        return _eval(expr.left, s) or _eval(expr.right, s)
    if isinstance(expr, Not):
        return not _eval(expr.inner, s)
    if isinstance(expr, StateIs):
        return bool(expr.mask >> s.state & 1)
    if isinstance(expr, PortCmp):
        return _CMP[expr.op](s.local_port if expr.side == "s" else s.peer_port, expr.port)
    if isinstance(expr, HostIs):
        if expr.side == "s":
            return _host_matches(expr, s.local_addr, s.local_port)
        return _host_matches(expr, s.peer_addr, s.peer_port)
    if expr.key == "pid":
        return any(o.pid == expr.value for o in s.owners)
    if expr.key == "comm":
        return any(o.comm == expr.value for o in s.owners)
    if expr.key == "container":
        return any(o.container is not None and o.container.matches(str(expr.value))
                   for o in s.owners)
    return s.uid == expr.value
