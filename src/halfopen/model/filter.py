"""Socket filters: ss's language (misc/ssfilter.y, misc/ss.c) plus pid, comm, uid, container.

A filter is a value: an expression tree parsed from the command line. It is
run in userspace by `matches()` and, where the kernel can run it, compiled to
inet_diag bytecode by halfopen.collect.bytecode. docs/filter.md has the grammar.

    state close-wait dport = :443
    sport >= :1024 and not ( dst 10.0.0.0/8 or dst [::1] )
    state established pid 812          (juxtaposition means "and", as in ss)

As in ss's grammar, `and`, `or` and juxtaposition are one level, grouped left
to right: `a or b and c` is `(a or b) and c`. A run of state/exclude words
builds one set of states. Values are read as ss reads them (filter_values).

The parser is a loop over tokens with an explicit stack, so no input can
exhaust Python's recursion; trees deeper than MAX_DEPTH and filters longer
than MAX_TOKENS are refused with one line, like every other bad filter.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from typing import Optional, Union

from halfopen.records import record

from ..errors import UsageError
from . import filter_values as values
from .filter_values import Network
from .socket import Socket
from .states import ALL_STATES, STATE_WORD_NAMES, STATE_WORDS
from .sysctls import DEFAULT_PORT_RANGE

MAX_DEPTH = 100  # nested (, not, and alternating and/or
MAX_TOKENS = 20000


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
    network: Optional[Network]  # None: any address
    port: Optional[int]  # None: any port


@record(frozen=True)
class HostName:
    """`src NAME` / `dst NAME`: a host name, replaced by its addresses in bind()."""

    side: str
    name: str
    port: Optional[int]
    family: Optional[int]


@record(frozen=True)
class DevIs:
    """`dev NAME`: the socket is bound to that interface (SO_BINDTODEVICE)."""

    name: str
    index: Optional[int] = None  # filled in per namespace by Filter.bind()


@record(frozen=True)
class MarkIs:
    """`fwmark MARK/MASK`: (sk_mark & mask) == mark, as inet_diag_bc_run()."""

    mark: int
    mask: int


@record(frozen=True)
class CgroupIs:
    """`cgroup PATH`: the socket's cgroup v2 id (looked up in bind())."""

    path: str
    cgroup_id: Optional[int] = None


@record(frozen=True)
class AutoBound:
    """`autobound`: the kernel chose the local port (no SOCK_BINDPORT_LOCK) and
    it lies in the ephemeral range, as ss checks both."""

    low: int = DEFAULT_PORT_RANGE[0]
    high: int = DEFAULT_PORT_RANGE[1]


@record(frozen=True)
class OwnerIs:
    key: str  # "pid", "comm", "uid" or "container" (name, pod, ns/pod, id or id prefix)
    value: Union[int, str]


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


Expr = Union[StateIs, PortCmp, HostIs, HostName, DevIs, MarkIs, CgroupIs, AutoBound, OwnerIs,
             And, Or, Not]
# Leaves /proc/net/tcp cannot answer: the kernel must run them (sock_diag).
SOCK_DIAG_ONLY = (DevIs, MarkIs, CgroupIs, AutoBound)

# Token spellings (misc/ssfilter.y yylex). Keywords are matched without
# regard to case, which ss does not do (documented in docs/filter.md).
OPERATORS = {"=": "eq", "==": "eq", "eq": "eq", "!=": "ne", "ne": "ne", "neq": "ne",
             ">=": "ge", "ge": "ge", "geq": "ge", "<=": "le", "le": "le", "leq": "le",
             ">": "gt", "gt": "gt", "<": "lt", "lt": "lt"}
JOIN_WORDS = {"and": "&", "&&": "&", "&": "&", "or": "|", "||": "|", "|": "|",
              "not": "!", "!": "!", "(": "(", ")": ")"}
STATE_RUN_WORDS = {"state": "state", "exclude": "exclude", "excl": "exclude"}

_GLUE = re.compile(r"\(|\)|>=|<=|!=|==|&&|\|\||[=<>&|]|!(?!=)|[^()=<>!&|]+")


def _split_words(words: Iterable[str]) -> list[str]:
    """ss's get_token_from_line(): words split at spaces and tabs; a backslash
    escapes the next character."""
    out: list[str] = []
    for word in words:
        cur, escaped, has = [], False, False
        for ch in word:
            if escaped:
                cur.append(ch)
                escaped = False
            elif ch == "\\":
                escaped, has = True, True
            elif ch in " \t":
                if cur or has:
                    out.append("".join(cur))
                cur, has = [], False
            else:
                cur.append(ch)
        if cur or has:
            out.append("".join(cur))
    return out


def tokenize(words: Iterable[str]) -> list[str]:
    """Split command-line words into filter tokens.

    Words glued to operators and parentheses are split apart (halfopen's
    leniency; ss wants spaces), except the value after dev, cgroup and comm,
    which may hold any character.

    >>> tokenize(["dport>=:1024", "and", "(src", "10.0.0.0/8)"])
    ['dport', '>=', ':1024', 'and', '(', 'src', '10.0.0.0/8', ')']
    """
    out: list[str] = []
    raw_next = False  # the next word is the value of dev, cgroup or comm
    for word in _split_words(words):
        low = word.lower()
        if raw_next:
            if low in OPERATORS:  # `dev = eth0`
                out.append(word)
                continue
            raw_next = False
            if low not in JOIN_WORDS and low not in WORDS:
                out.append(word)
                continue
        whole = low in JOIN_WORDS or low in OPERATORS or low in WORDS
        for piece in [word] if whole else _GLUE.findall(word):
            out.append(piece)
            if piece.lower() not in OPERATORS:
                raw_next = piece.lower() in RAW_VALUE_WORDS
        if len(out) > MAX_TOKENS:
            raise UsageError(f"filter too long: more than {MAX_TOKENS} words")
    return out


@record(frozen=True)
class Filter:
    """A parsed filter; `expr` None means every socket.

    family: 4 or 6 when an inet:/inet6: prefix limits the whole query (ss:
    the last prefix wins). ambiguity: set when `and` follows `or` on one
    level without parentheses, where ss and its manual disagree.
    """

    expr: Optional[Expr]
    text: str = ""
    family: Optional[int] = None
    ambiguity: str = ""
    notes: tuple[str, ...] = ()  # how odd values were read (a port past 65535), for stderr

    @property
    def dual(self) -> bool:
        """True when ss's two matchers read this filter differently (see _eval):
        `autobound`, a /0 prefix (`::/0`), or a port outside 0-65535 under
        `>=`/`<=`/`>`/`<`. Then a
        socket is shown when both readings accept it, and the kernel's bytecode
        alone is not the answer."""
        return self.expr is not None and _any_leaf(self.expr, _reads_twice)

    @property
    def needs_owners(self) -> bool:
        return self.expr is not None and _any_leaf(self.expr, lambda e: isinstance(e, OwnerIs)
                                                   and e.key != "uid")

    @property
    def needs_sock_diag(self) -> bool:
        """True when a word needs what only sock_diag reports (device, mark, cgroup,
        the kernel's port lock)."""
        return self.expr is not None and _any_leaf(
            self.expr, lambda e: isinstance(e, SOCK_DIAG_ONLY))

    def required_pids(self) -> Optional[frozenset[int]]:
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
        return self.expr is None and self.family is None

    def devices(self) -> frozenset[str]:
        """The interface names `dev` words name (resolved per namespace)."""
        found: set[str] = set()

        def note(e: Expr) -> bool:
            if isinstance(e, DevIs):
                found.add(e.name)
            return False

        if self.expr is not None:
            _any_leaf(self.expr, note)
        return frozenset(found)

    def names(self) -> tuple[frozenset[tuple[str, Optional[int]]], frozenset[str]]:
        """The host names (with the family they are read in) and cgroup paths to look up."""
        hosts: set[tuple[str, Optional[int]]] = set()
        paths: set[str] = set()

        def note(e: Expr) -> bool:
            if isinstance(e, HostName):
                hosts.add((e.name, e.family))
            elif isinstance(e, CgroupIs):
                paths.add(e.path)
            return False

        if self.expr is not None:
            _any_leaf(self.expr, note)
        return frozenset(hosts), frozenset(paths)

    def bind(self, ifindex: dict[str, Optional[int]],
             port_range: tuple[int, int] = DEFAULT_PORT_RANGE,
             hosts: Optional[dict[tuple[str, Optional[int]], tuple[Network, ...]]] = None,
             cgroups: Optional[dict[str, int]] = None) -> Filter:
        """This filter with the facts it names filled in: interface indexes of one
        namespace (name -> index, None when absent there), its ip_local_port_range,
        the addresses of host names and the ids of cgroup paths (collect.filter_names)."""
        if self.expr is None:
            return self

        def fill(leaf: Expr) -> Expr:
            if isinstance(leaf, HostName) and hosts is not None:
                found = [HostIs(leaf.side, net, leaf.port)
                         for net in hosts.get((leaf.name, leaf.family), ())]
                if not found:
                    raise UsageError(f"bad address {values._show(leaf.name)}: not an address "
                                     "and not a name in /etc/hosts")
                expr: Expr = found[0]
                for more in found[1:]:  # a name with several addresses: any of them
                    expr = Or(expr, more)
                return expr
            if isinstance(leaf, CgroupIs) and cgroups is not None:
                return CgroupIs(leaf.path, cgroups[leaf.path])
            if isinstance(leaf, DevIs):
                index = ifindex.get(leaf.name)
                if index is None:  # parse_devcond(): then the name as a number
                    index = values.device_number(leaf.name)
                return DevIs(leaf.name, -1 if index is None else index)
            if isinstance(leaf, AutoBound):
                return AutoBound(*port_range)
            return leaf

        return Filter(_map_leaves(self.expr, fill), self.text, self.family, self.ambiguity,
                      self.notes)

    def matches(self, sock: Socket) -> bool:
        return self.predicate()(sock)

    def predicate(self, kernel_ran: bool = False) -> Callable[[Socket], bool]:
        """The userspace test. kernel_ran: the kernel's bytecode has already run
        the whole filter (its reading), so only ss's userspace reading is left;
        otherwise both readings are checked here, `autobound`'s lock half aside
        (the kernel's alone: userspace sees the port-range half)."""
        expr, family = self.expr, self.family
        if expr is None:
            return (lambda _s: True) if family is None else (lambda s: s.family == family)
        if self.dual and not kernel_ran:
            def test(s: Socket) -> bool:
                return _eval(expr, s) and _eval(expr, s, True)
        else:
            def test(s: Socket) -> bool:
                return _eval(expr, s)
        if family is not None:
            return lambda s: s.family == family and test(s)
        return test


def parse(words: Iterable[str]) -> Filter:
    """Parse ss-style filter words; raise UsageError (one line) naming the bad word."""
    words = list(words)
    for w in words:
        if not isinstance(w, str) or "\0" in w:
            raise UsageError("bad filter: a word holds a NUL byte")
    tokens = tokenize(words)
    if not tokens:
        return Filter(None, "")
    parser = _Parser(tokens)
    expr = parser.parse()
    return Filter(expr, " ".join(words), parser.family, parser.ambiguity,
                  tuple(dict.fromkeys(parser.notes)))


# ---------------------------------------------------------------- the grammar

class _Frame:
    """One level of `exprlist` (ssfilter.y): operands joined left to right."""

    __slots__ = ("start", "items", "run_op", "pending", "nots", "ops", "spans")

    def __init__(self, start: int) -> None:
        self.start = start  # token index where the level starts
        self.items: list[tuple[Expr, int]] = []  # the current run joined by run_op
        self.run_op = ""  # "&" or "|"
        self.pending = ""  # the join just read ("&", "|"); "" right after an operand
        self.nots = 0  # `not`s read before the next operand
        self.ops: list[str] = []  # every join of this level ("&" for juxtaposition)
        self.spans: list[tuple[int, int]] = []  # first and last token of each operand


def _balanced(op: str, items: list[tuple[Expr, int]]) -> tuple[Expr, int]:
    """op over items (associative), as a tree log2(n) deep instead of n."""
    if len(items) == 1:
        return items[0]
    mid = (len(items) + 1) // 2
    left, ldepth = _balanced(op, items[:mid])
    right, rdepth = _balanced(op, items[mid:])
    node = And(left, right) if op == "&" else Or(left, right)
    return node, max(ldepth, rdepth) + 1


class _Parser:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.family: Optional[int] = None
        self.ambiguity = ""
        self.notes: list[str] = []
        self._word_at = 0

    # -- token access
    def peek(self) -> Optional[str]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def peek_kind(self) -> str:
        tok = self.peek()
        return "" if tok is None else JOIN_WORDS.get(tok.lower(), "")

    def take(self, what: str) -> str:
        tok = self.peek()
        if tok is None:
            raise UsageError(f"filter ends early: {what} expected")
        self.pos += 1
        return tok

    def take_value(self, word: str, what: str) -> str:
        """The value after `word` and its operator; a missing one (`sport =` at the
        end, or before `or`, `and`, `)`) is ss's syntax error: one line naming
        what is missing and what would do."""
        said = " ".join(self.tokens[self._word_at:self.pos])
        hint = VALUE_HINTS.get(word, what)
        tok = self.peek()
        if tok is None:
            raise UsageError(f"filter ends early: `{said}` wants {hint}")
        low = tok.lower()
        if low in JOIN_WORDS or low in WORDS or low in OPERATORS:
            raise UsageError(f"`{said}` wants {hint}, not {values._show(tok)}")
        self.pos += 1
        return tok

    def take_op(self, allowed: tuple[str, ...]) -> str:
        """An optional operator (ss's `eq`: '=' or nothing); 'eq' when absent."""
        tok = self.peek()
        op = OPERATORS.get(tok.lower()) if tok is not None else None
        if op is None:
            return "eq"
        if op not in allowed:
            raise UsageError(f"operator {tok!r} does not apply here; use "
                             + " or ".join(sorted({k for k, v in OPERATORS.items()
                                                   if v in allowed and not k.isalpha()})))
        self.pos += 1
        return op

    # -- exprlist / expr, iteratively
    def parse(self) -> Optional[Expr]:
        head = self._state_run() if self.peek_kind() == "" and \
            (self.peek() or "").lower() in STATE_RUN_WORDS else None
        root = _Frame(self.pos)
        stack = [root]
        if head is not None and self.peek_kind() in ("&", "|"):
            self._operand(root, head, self.pos - 1)  # `state x or ...`: an ordinary term
            head = None
        while self.pos < len(self.tokens):
            frame = stack[-1]
            start = self.pos
            kind = self.peek_kind()
            if kind in ("&", "|"):
                if frame.pending or frame.nots or not frame.items:
                    raise UsageError(f"unexpected {self.peek()!r}: a filter term must "
                                     "come before it")
                frame.pending = kind
                self.pos += 1
                continue
            if kind == "!":
                self._join_implicitly(frame)
                frame.nots += 1
                self.pos += 1
                continue
            if kind == "(":
                self._join_implicitly(frame)
                if len(stack) > MAX_DEPTH:
                    raise UsageError(f"filter nests too deeply: more than {MAX_DEPTH} "
                                     "levels of '('")
                self.pos += 1
                stack.append(_Frame(self.pos))
                continue
            if kind == ")":
                if len(stack) == 1:
                    raise UsageError("unbalanced ')' in filter")
                if frame.pending or frame.nots or not frame.items:
                    raise UsageError("a filter term is expected before ')'")
                self.pos += 1
                stack.pop()
                done = self._close(frame)
                self._operand(stack[-1], done, frame.start - 1, closing=True)
                continue
            self._join_implicitly(frame)
            leaf = self._leaf(self.take("a filter word"))
            self._operand(frame, (leaf, 0), start)
        if len(stack) > 1:
            raise UsageError("unbalanced '(' in filter: ')' expected")
        if root.pending or root.nots:
            raise UsageError("filter ends early: a filter term expected")
        body = self._close(root)[0] if root.items else None
        if head is not None:
            return head[0] if body is None else And(head[0], body)
        return body

    def _join_implicitly(self, frame: _Frame) -> None:
        if frame.items and not frame.pending and not frame.nots:
            frame.pending = "&"  # juxtaposition: ssfilter.y `exprlist expr`

    def _operand(self, frame: _Frame, done: tuple[Expr, int], first: int,
                 closing: bool = False) -> None:
        expr, depth = done
        for _ in range(frame.nots):
            expr, depth = Not(expr), depth + 1
        frame.nots = 0
        if depth > MAX_DEPTH:
            raise UsageError(f"filter nests too deeply: more than {MAX_DEPTH} levels of "
                             "not, '(' and alternating and/or")
        frame.spans.append((first, self.pos - 1))
        if not frame.items:
            frame.items = [(expr, depth)]
            frame.run_op = ""
            return
        op = frame.pending
        frame.ops.append(op)
        frame.pending = ""
        if frame.run_op and op != frame.run_op:
            frame.items = [_balanced(frame.run_op, frame.items)]
        frame.run_op = op
        frame.items.append((expr, depth))

    def _close(self, frame: _Frame) -> tuple[Expr, int]:
        ops = frame.ops
        if not self.ambiguity and "|" in ops and "&" in ops[ops.index("|"):]:
            self.ambiguity = self._readings(frame)
        expr, depth = _balanced(frame.run_op or "&", frame.items)
        if depth > MAX_DEPTH:
            raise UsageError(f"filter nests too deeply: more than {MAX_DEPTH} levels of "
                             "not, '(' and alternating and/or")
        return expr, depth

    def _readings(self, frame: _Frame) -> str:
        """Both groupings of one level: ss's (left to right) and and-before-or."""
        terms = [" ".join(self.tokens[a:b + 1]) for a, b in frame.spans]
        ss = terms[0]
        for op, term in zip(frame.ops, terms[1:]):
            ss = f"( {ss} {'or' if op == '|' else 'and'} {term} )"
        groups, cur = [], [terms[0]]
        for op, term in zip(frame.ops, terms[1:]):
            if op == "|":
                groups.append(cur)
                cur = [term]
            else:
                cur.append(term)
        groups.append(cur)
        manual = " or ".join(g[0] if len(g) == 1 else "( " + " and ".join(g) + " )"
                             for g in groups)
        return f"ss reads it as `{ss[2:-2]}`, the ss(8) manual as `{manual}`"

    # -- leaves
    def _leaf(self, word: str) -> Expr:
        self._word_at = self.pos - 1  # where the word starts, for take_value's message
        handler = WORDS.get(word.lower())
        if handler is None:
            raise UsageError(f"unknown filter word {values._show(word)}; valid words: "
                             f"{VALID_WORDS}")
        return handler(self, word.lower())

    def _state_run(self) -> tuple[Expr, int]:
        """ss.c main(): `state`/`exclude` words build one set, in order."""
        mask: Optional[int] = None
        while (self.peek() or "").lower() in STATE_RUN_WORDS:
            word = STATE_RUN_WORDS[self.take("").lower()]
            name = self.take(f"a state name after {word!r}")
            states = STATE_WORDS.get(name.lower())
            if states is None:
                raise UsageError(f"unknown state {values._show(name)}; valid states: "
                                 + ", ".join(STATE_WORD_NAMES))
            if word == "state":
                mask = (mask or 0) | states
            else:
                mask = (ALL_STATES if mask is None else mask) & ~states
        return StateIs(mask or 0), 0

    def host_value(self, word: str, is_port: bool) -> values.HostValue:
        text = self.take_value(word, "a port" if is_port else "an address")
        value = values.parse_host(text, is_port, self.family)
        if value.family is not None:
            self.family = value.family  # ss: filter_af_set(), the last prefix wins
        return value


def _word_state(p: _Parser, word: str) -> Expr:
    p.pos -= 1  # the run starts at this word
    return p._state_run()[0]


def _word_port(p: _Parser, word: str) -> Expr:
    """ss keeps a port in a C int, -1 (also `*`) meaning any: `=`/`!=` with -1 is
    "any port"; a comparison takes -1 and any other int as ss does (_eval)."""
    side = word[0]
    op = p.take_op(("eq", "ne", "ge", "le", "gt", "lt"))
    value = p.host_value(word, True)
    port = -1 if value.port is None else value.port
    if port == -1 and op in ("eq", "ne"):
        if value.port is not None:
            p.notes.append(values.port_note(word, op, port))
        leaf: Expr = HostIs(side, None, None)
        return Not(leaf) if op == "ne" else leaf
    if not 0 <= port <= 0xFFFF:
        p.notes.append(values.port_note(word, op, port))
    return PortCmp(side, op, port)


def _word_host(p: _Parser, word: str) -> Expr:
    op = p.take_op(("eq", "ne"))  # ss has no `src !=`: halfopen's extension
    value = p.host_value(word, False)
    side = word[0]
    if value.port is not None and not 0 <= value.port <= 0xFFFF:
        p.notes.append(values.port_note(word, "host", value.port))
        if value.port == -1:  # ss: a.port -1 is "any port"
            value = values.HostValue(value.networks, None, value.family, value.name)
    if value.name:
        named: Expr = HostName(side, value.name, value.port, value.family)
        return Not(named) if op == "ne" else named
    leaves = [HostIs(side, net, value.port) for net in (value.networks or (None,))]
    expr: Expr = leaves[0]
    for more in leaves[1:]:  # a host name with several addresses: any of them
        expr = Or(expr, more)
    return Not(expr) if op == "ne" else expr


def _word_dev(p: _Parser, word: str) -> Expr:
    op = p.take_op(("eq", "ne"))
    name = p.take_value(word, "an interface name or index")
    if len(name) > 15 and values.device_number(name) is None:  # IFNAMSIZ - 1
        raise UsageError(f"bad device {values._show(name)}: names are at most 15 characters")
    leaf = DevIs(name)
    return Not(leaf) if op == "ne" else leaf


def _word_fwmark(p: _Parser, word: str) -> Expr:
    op = p.take_op(("eq", "ne"))
    leaf = MarkIs(*values.parse_mark(p.take_value(word, "a mark")))
    return Not(leaf) if op == "ne" else leaf


def _word_cgroup(p: _Parser, word: str) -> Expr:
    op = p.take_op(("eq", "ne"))
    path = p.take_value(word, "a cgroup path")
    leaf = CgroupIs(path)
    return Not(leaf) if op == "ne" else leaf


def _word_autobound(p: _Parser, word: str) -> Expr:
    return AutoBound()


_NUMBER = re.compile(r"[0-9]{1,10}\Z", re.ASCII)


def _word_owner_number(p: _Parser, word: str) -> Expr:
    value = p.take(f"a {word} number")
    if not _NUMBER.match(value) or int(value) > 0xFFFFFFFF:
        raise UsageError(f"{word} wants a number, not {values._show(value)}")
    return OwnerIs(word, int(value))


def _word_comm(p: _Parser, word: str) -> Expr:
    return OwnerIs("comm", p.take("a process name"))


def _word_container(p: _Parser, word: str) -> Expr:
    return OwnerIs("container", p.take("a container name, pod or id"))


# Every filter word and its reader. A reader gets the parser (positioned after
# the word) and the word in lower case, and returns one expression. To add a
# word, add it here (and to RAW_VALUE_WORDS when its value may hold any
# character) and to docs/filter.md.
WORDS: dict[str, Callable[[_Parser, str], Expr]] = {
    "state": _word_state, "exclude": _word_state, "excl": _word_state,
    "sport": _word_port, "dport": _word_port,
    "src": _word_host, "dst": _word_host,
    "dev": _word_dev, "fwmark": _word_fwmark, "cgroup": _word_cgroup,
    "autobound": _word_autobound,
    "pid": _word_owner_number, "uid": _word_owner_number, "comm": _word_comm,
    "container": _word_container,
}
RAW_VALUE_WORDS = {"dev", "cgroup", "comm", "container"}
# What each word's value looks like, for the line about a missing or wrong one.
VALUE_HINTS = {
    "sport": "a port (:22, 22, ssh or :*)", "dport": "a port (:22, 22, ssh or :*)",
    "src": "an address (10.0.0.1, 10.0.0.0/8, [::1]:22, *:22 or a name in /etc/hosts)",
    "dst": "an address (10.0.0.1, 10.0.0.0/8, [::1]:22, *:22 or a name in /etc/hosts)",
    "dev": "an interface name or index (eth0, 2)", "fwmark": "a mark (0x10 or 0x10/0xff)",
    "cgroup": "a cgroup path (/system.slice/nginx.service)",
}
VALID_WORDS = ", ".join(list(WORDS) + ["and", "or", "not", "(", ")"])


# ---------------------------------------------------------------- walking trees

def _conjuncts(expr: Expr) -> list[Expr]:
    out: list[Expr] = []
    todo: list[Expr] = [expr]
    while todo:
        e = todo.pop()
        if isinstance(e, And):
            todo += [e.right, e.left]
        else:
            out.append(e)
    return out


def _any_leaf(expr: Expr, test: Callable[[Expr], bool]) -> bool:
    todo = [expr]
    while todo:
        e = todo.pop()
        if isinstance(e, (And, Or)):
            todo += [e.right, e.left]
        elif isinstance(e, Not):
            todo.append(e.inner)
        elif test(e):
            return True
    return False


def _map_leaves(expr: Expr, fill: Callable[[Expr], Expr]) -> Expr:
    if isinstance(expr, And):
        return And(_map_leaves(expr.left, fill), _map_leaves(expr.right, fill))
    if isinstance(expr, Or):
        return Or(_map_leaves(expr.left, fill), _map_leaves(expr.right, fill))
    if isinstance(expr, Not):
        return Not(_map_leaves(expr.inner, fill))
    return fill(expr)


_CMP = {"eq": int.__eq__, "ne": int.__ne__, "ge": int.__ge__, "le": int.__le__,
        "gt": int.__gt__, "lt": int.__lt__}


def _reads_twice(leaf: Expr) -> bool:
    if isinstance(leaf, HostIs):  # ::/0, 0.0.0.0/0: a family in the kernel, any address in ss
        return leaf.network is not None and leaf.network.prefixlen == 0
    return isinstance(leaf, AutoBound) or (
        isinstance(leaf, PortCmp) and leaf.op not in ("eq", "ne")
        and not 0 <= leaf.port <= 0xFFFF)


def _host_matches(leaf: HostIs, addr: str, port: int, kernel: bool = True) -> bool:
    """inet_diag_bc_run()'s S_COND/D_COND: the port, then the family (an IPv4
    prefix also matches v4-mapped IPv6), then the prefix. ss's userspace
    matcher (kernel=False) skips the address of a /0 prefix: `src ::/0` is
    IPv6 only in the kernel and any socket in ss's own check, so under `not`
    ss shows none."""
    if leaf.port is not None and leaf.port != port:
        return False
    if leaf.network is None or (not kernel and leaf.network.prefixlen == 0):
        return True
    ip = ipaddress.ip_address(addr)
    if ip.version == 6 and leaf.network.version == 4 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.version == leaf.network.version and ip in leaf.network


def _eval(expr: Expr, s: Socket, kernel: bool = False) -> bool:
    """One of ss's two readings of a filter: its userspace matcher's
    (run_ssfilter), or with kernel=True its bytecode's as inet_diag_bc_run()
    runs it. They differ only where Filter.dual says: a /0 prefix is only a
    family in the kernel and any address in userspace; a `>=`/`<=` port is a C
    int in userspace and its low 16 bits in the kernel (`>` and `<` are `not`
    of those), and `autobound` is "in the ephemeral range" in userspace and
    "no port lock" in the kernel (which only the kernel can see: here both
    readings test the range)."""
    if isinstance(expr, And):
        return _eval(expr.left, s, kernel) and _eval(expr.right, s, kernel)
    if isinstance(expr, Or):
        return _eval(expr.left, s, kernel) or _eval(expr.right, s, kernel)
    if isinstance(expr, Not):
        return not _eval(expr.inner, s, kernel)
    if isinstance(expr, StateIs):
        return bool(expr.mask >> s.state & 1)
    if isinstance(expr, PortCmp):
        port = expr.port & 0xFFFF if kernel and expr.op not in ("eq", "ne") else expr.port
        return _CMP[expr.op](s.local_port if expr.side == "s" else s.peer_port, port)
    if isinstance(expr, HostIs):
        if expr.side == "s":
            return _host_matches(expr, s.local_addr, s.local_port, kernel)
        return _host_matches(expr, s.peer_addr, s.peer_port, kernel)
    if isinstance(expr, DevIs):
        index = expr.index if expr.index is not None else values.device_number(expr.name)
        return s.ifindex == index
    if isinstance(expr, MarkIs):  # mini sockets carry no mark attribute: 0, as ss
        return ((s.mark or 0) & expr.mask) == expr.mark
    if isinstance(expr, CgroupIs):
        return expr.cgroup_id is not None and (s.cgroup_id or 0) == expr.cgroup_id
    if isinstance(expr, HostName):
        return False  # not bound: no address known
    if isinstance(expr, AutoBound):
        return expr.low <= s.local_port <= expr.high
    if expr.key == "pid":
        return any(o.pid == expr.value for o in s.owners)
    if expr.key == "comm":
        return any(o.comm == expr.value for o in s.owners)
    if expr.key == "container":
        return any(o.container is not None and o.container.matches(str(expr.value))
                   for o in s.owners)
    return s.uid == expr.value
