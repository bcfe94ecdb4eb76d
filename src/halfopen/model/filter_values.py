"""The values of ss's filter words, read as ss reads them.

Pure: host names and cgroup paths are looked up when the filter is bound to a
namespace (collect.filter_names). Each reader follows one iproute2 function and says which (misc/ss.c
parse_hostcond, find_port, parse_markmask, parse_devcond, parse_cgroupcond;
lib/utils.c get_integer, get_unsigned, get_addr_ipv4, get_prefix_1,
get_netmask). Where ss accepts something that makes no sense (a mark with
trailing garbage) the reader refuses it instead; docs/filter.md lists each such
difference. Ports outside 0-65535 are taken as ss takes them, with a note. Every failure is one UsageError line, whatever the
input (non-ASCII, NUL bytes, huge numbers).

    >>> read_port("026"), read_port("0x16"), read_port("+22"), read_port("ssh")
    (22, 22, 22, 22)
    >>> parse_host("198.18/15", False)
    HostValue(networks=(IPv4Network('198.18.0.0/15'),), port=None, family=None, name='')
    >>> parse_host("fd00::2:40000", False).port
    40000
    >>> parse_host("::/0:22", False).networks  # IPv6 sockets only, as in ss
    (IPv6Network('::/0'),)
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Optional, Union

from halfopen.records import record

from ..errors import UsageError

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

# C's strtol/strtoul with base 0: optional sign, then 0x.. hex, 0.. octal or decimal.
_C_INT = re.compile(r"[+-]?(?:0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)\Z", re.ASCII)
_C_SPACE = " \t\n\v\f\r"  # isspace() in the C locale
_SERVICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}\Z", re.ASCII)
_HOSTNAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]{0,252})\Z", re.ASCII)


def c_int(text: str) -> Optional[int]:
    """The whole of `text` read by strtol(text, &end, 0) with *end == 0, else None.

    >>> c_int("026"), c_int("0x16"), c_int("+22"), c_int("-0"), c_int("08"), c_int("²")
    (22, 22, 22, 0, None, None)
    """
    if not _C_INT.match(text):
        return None
    sign = -1 if text[0] == "-" else 1
    digits = text.lstrip("+-")
    if digits[:2] in ("0x", "0X"):
        return sign * int(digits[2:], 16)
    if len(digits) > 1 and digits[0] == "0":
        return sign * int(digits[1:], 8)
    return sign * int(digits)


def _c_ulong_prefix(text: str) -> tuple[Optional[int], str]:
    """strtoul(text, &end, 0): (value or None when no digits, the rest at end).

    Leading C white space and a sign are skipped as strtoul does; a minus
    sign wraps like C's unsigned negation.
    """
    stripped = text.lstrip(_C_SPACE)
    m = re.match(r"([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)", stripped, re.ASCII)
    if not m:
        return None, text
    sign, digits = m.groups()
    value = c_int(digits)
    assert value is not None
    if sign == "-" and value:
        value = (1 << 64) - value
    return value, stripped[m.end():]


INT_MIN, INT_MAX = -(1 << 31), (1 << 31) - 1  # get_integer(): a C int


def read_port(text: str, whole: str = "") -> int:
    """A port as parse_hostcond() reads it once its ':' is gone.

    Numbers are read like strtol(.., 0) into a C int (get_integer), then as a
    TCP service name (getservbyname). As in ss, any int is taken: -1 means
    any port, and ports past 65535 or below -1 are compared as ss compares
    them (model.filter, port_note()).

    >>> read_port("70000"), read_port("-1"), read_port("0x10000")
    (70000, -1, 65536)
    """
    body = text
    value = c_int(body)
    if value is None and _SERVICE.match(body):
        try:
            value = socket.getservbyname(body, "tcp")
        except OSError:
            value = None
    if value is None or not INT_MIN <= value <= INT_MAX:
        raise UsageError(f"bad port {_show(whole or text)}: a number 0-65535 (026 and 0x16 are "
                         "read as C reads them; as in ss, a C int outside that range is "
                         "taken, with a note) or a service name such as ssh")
    return value


def port_note(word: str, op: str, port: int) -> str:
    """The note for a port outside 0-65535: how ss (and so halfopen) reads it.

    ss keeps the port in a C int: its own matcher compares that int, the
    kernel's bytecode compares `>=`/`<=` with its low 16 bits (a u16 field)
    and `=`/`!=` with the int; a socket is shown when both accept it.

    >>> port_note("sport", "ge", 70000)
    'port 70000 of `sport >=` is out of range (0-65535): read as ss reads it, 70000 in userspace and 4464 (its low 16 bits) in the kernel; a socket must pass both'
    >>> port_note("dport", "eq", -1)
    'port -1 of `dport =` means any port, as in ss'
    """
    said = word if op == "host" else f"{word} {OP_TEXT[op]}"  # host: `src 1.2.3.4:-1`
    if op in ("eq", "ne", "host"):
        if port == -1:
            return f"port -1 of `{said}` means any port, as in ss"
        return f"port {port} of `{said}` is out of range (0-65535): no socket has it, as in ss"
    what = "the wildcard port (-1)" if port == -1 else f"port {port}"
    return (f"{what} of `{said}` is out of range (0-65535): read as ss reads it, {port} in "
            f"userspace and {port & 0xFFFF} (its low 16 bits) in the kernel; a socket must "
            "pass both")


OP_TEXT = {"eq": "=", "ne": "!=", "ge": ">=", "le": "<=", "gt": ">", "lt": "<"}


@record(frozen=True)
class HostValue:
    """What `src`/`dst`/`sport`/`dport` compare: addresses (any), port (any), family."""

    networks: Optional[tuple[Network, ...]]  # None: any address (or `name`)
    port: Optional[int]  # None: any port
    family: Optional[int]  # 4 or 6 from an inet:/inet6: prefix, else None
    name: str = ""  # a host name, looked up later (collect.filter_names)


def parse_host(text: str, is_port: bool, family: Optional[int] = None) -> HostValue:
    """ss's parse_hostcond() for the TCP families.

    Without brackets the port is split off at the last ':' (after any '/'),
    so `fd00::2:40000` is fd00::2 port 40000 and a bare `2001:db8::1` is
    refused, as ss refuses it. `*` or an empty port means any port.
    family: the family an earlier inet:/inet6: prefix chose (ss's
    filter_af_set() sets preferred_family for every later address).
    """
    rest = text
    for prefix, fam in (("inet:", 4), ("inet6:", 6)):
        if rest.startswith(prefix):
            family, rest = fam, rest[len(prefix):]
            break
    for other in ("unix:", "link:", "netlink:", "vsock:"):
        if rest.startswith(other):
            raise UsageError(f"bad address {_show(text)}: halfopen reads TCP sockets only; "
                             "the families are inet: and inet6:")
    if is_port:
        port_text: Optional[str] = rest
        addr = ""
    elif rest.startswith("["):
        close = rest.find("]")
        if close < 0:
            raise UsageError(f"bad address {_show(text)}: missing ']'")
        addr, port_text = rest[1:close], rest[close + 1:]
        if port_text.startswith("/"):  # halfopen's extension: [2001:db8::]/32[:PORT]
            length, sep, tail = port_text.partition(":")
            addr, port_text = addr + length, sep + tail
    elif rest.startswith("*"):
        addr, port_text = rest, rest[1:]
    else:
        at = rest.find("/")
        last = rest.rfind(":", at if at >= 0 else 0)
        if last >= 0:
            addr, port_text = rest[:last], rest[last:]
        else:
            addr, port_text = rest, None
    port = None
    if port_text:
        if port_text.startswith(":"):
            port_text = port_text[1:]
        if port_text and not port_text.startswith("*"):
            port = read_port(port_text, text)
    networks = None
    if not is_port and addr and not addr.startswith("*"):
        networks = _prefix(addr, family, text)
        if networks == ():
            return HostValue(None, port, family, addr)
    return HostValue(networks, port, family)


def _prefix(addr: str, family: Optional[int], text: str) -> Optional[tuple[Network, ...]]:
    """get_prefix_1(); () for a host name (looked up later, never in DNS)."""
    base, slash, length = addr.partition("/")
    if base in ("any", "all", "default"):
        if slash:
            raise UsageError(f"bad address {_show(text)}: {base} takes no /LEN")
        if family is None:
            return None
        return (ipaddress.ip_network("0.0.0.0/0" if family == 4 else "::/0"),)
    raw = _address(base, family)
    if raw is not None:
        bits = 8 * len(raw)
        plen = bits
        if slash:
            mask = _netmask(length)
            if mask is None or mask > bits:
                raise UsageError(f"bad address {_show(text)}: /LEN is 0-{bits} or a "
                                 "dotted netmask")
            plen = mask
        # by the address's own length: as a bare int, `::/0` (0) would be read as IPv4
        kind = ipaddress.IPv4Network if len(raw) == 4 else ipaddress.IPv6Network
        return (kind((raw, plen), strict=False),)
    numeric = re.fullmatch(r"[0-9.]+", base) is not None
    if not slash and numeric and family != 6 and not base.endswith("."):
        raw = _inet_aton(base)  # glibc reads all-digits names as inet_aton does
        if raw is not None:
            return (ipaddress.ip_network(raw),)
    elif not slash and not numeric and _HOSTNAME.match(base):
        return ()
    if ":" in text and "[" not in text:
        raise UsageError(f"bad address {_show(text)}: as in ss, the part after the last ':' "
                         "is a port; write IPv6 addresses in brackets, e.g. [::1] or [::1]:22")
    raise UsageError(f"bad address {_show(text)}: an IPv4/IPv6 address or prefix "
                     "(10.0.0.0/8, 198.18/15, [::1]:22, fd00::/8) or a host name")


def _address(text: str, family: Optional[int]) -> Optional[bytes]:
    """get_addr_1(): IPv6 when there is a ':', else IPv4 as get_addr_ipv4 reads it."""
    if ":" in text:
        if family == 4 or not _printable_ascii(text) or "%" in text:
            return None
        try:  # inet_pton's syntax; ipaddress would also take a %scope
            return ipaddress.IPv6Address(text).packed
        except ValueError:
            return None
    if family == 6:
        return None
    return _ipv4_parts(text)


def _ipv4_parts(text: str) -> Optional[bytes]:
    """lib/utils.c get_addr_ipv4: 1 to 4 parts, each strtoul(.., 0) <= 255.

    >>> _ipv4_parts("198.18"), _ipv4_parts("010.0x1.2.3"), _ipv4_parts("1.2.3.4.5")
    (b'\\xc6\\x12\\x00\\x00', b'\\x08\\x01\\x02\\x03', None)
    """
    out = bytearray(4)
    rest = text
    for i in range(4):
        value, tail = _c_ulong_prefix(rest)
        if value is None or value > 255:
            return None
        out[i] = value
        if tail == "":
            return bytes(out)
        if i == 3 or tail[0] != ".":
            return None
        rest = tail[1:]
    return None


def _netmask(text: str) -> Optional[int]:
    """get_netmask(): get_unsigned(.., 0), else a contiguous dotted IPv4 mask."""
    value, tail = _c_ulong_prefix(text)
    if value is not None and tail == "":
        return value if value <= 0xFFFFFFFF else None
    raw = _ipv4_parts(text)
    if raw is None:
        return None
    mask = int.from_bytes(raw, "big")
    host = ~mask & 0xFFFFFFFF
    if host & (host + 1):
        return None
    return 32 - host.bit_length()


def _inet_aton(text: str) -> Optional[bytes]:
    """inet_aton(): a.b.c.d, a.b.c (c is 16 bits), a.b (b is 24 bits), a (32 bits)."""
    parts = text.split(".")
    if len(parts) > 4 or any(not p for p in parts):
        return None
    read = [c_int(p) for p in parts]
    values = [v for v in read if v is not None and v >= 0]
    if len(values) != len(read):
        return None
    last_bits = 8 * (5 - len(parts))
    head = values[:-1]
    if any(v > 255 for v in head) or values[-1] >= 1 << last_bits:
        return None
    number = 0
    for v in head:
        number = number << 8 | v
    number = number << last_bits | values[-1]
    return number.to_bytes(4, "big")


def parse_mark(text: str) -> tuple[int, int]:
    """`fwmark V[/M]` -> (mark, mask); mask 0xffffffff when left out.

    ss reads these with sscanf("%i/%i"), which also takes trailing garbage
    ("1x", "1/2/3"); halfopen wants two whole numbers.
    """
    mark_text, slash, mask_text = text.partition("/")
    mark = _u32(mark_text)
    mask = _u32(mask_text) if slash else 0xFFFFFFFF
    if mark is None or mask is None:
        raise UsageError(f"bad fwmark {_show(text)}: MARK or MARK/MASK, numbers up to "
                         "0xffffffff (e.g. 0x10/0xff)")
    return mark, mask


def _u32(text: str) -> Optional[int]:
    value = c_int(text)
    return value if value is not None and 0 <= value <= 0xFFFFFFFF else None


def device_number(text: str) -> Optional[int]:
    """parse_devcond()'s fallback: an interface index written as a number."""
    return _u32(text)


def _printable_ascii(text: str) -> bool:
    return text.isascii() and text.isprintable()


def _show(text: str) -> str:
    """A value quoted for an error line: printable, short, one line."""
    shown = text if len(text) <= 60 else text[:57] + "..."
    return ascii(shown) if not _printable_ascii(shown) else repr(shown)
