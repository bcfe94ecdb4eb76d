"""Stream every TCP socket a query asks for: sock_diag first, /proc as fallback.

The filter's states and port/address conditions go into the kernel request
(collect.bytecode); what the kernel cannot check (pid, comm, uid, states
under "or"/"not") is checked here. Owners are scanned only when asked for
or when the filter needs them.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from dataclasses import field
from typing import IO, Any, Optional

from halfopen.records import record

from ..errors import HalfopenError, NamespaceError, UsageError
from ..kernel import netlink
from ..model.filter import Filter
from ..model.filter_values import device_number
from ..model.socket import OUTBOUND, Socket
from ..model.states import ALL_STATES, TcpState
from ..model.sysctls import DEFAULT_PORT_RANGE
from . import bytecode, diag_replies, direction, filter_names, netns, owners, procfs_tcp

LISTEN = int(TcpState.LISTEN)

SOURCES = ("auto", "sock_diag", "procfs")


@record(frozen=True)
class Query:
    filter: Filter = Filter(None)
    tcp_info: bool = False  # INET_DIAG_INFO and SKMEMINFO
    owners: bool = False
    namespaces: tuple[netns.Namespace, ...] = ()  # () = this thread's namespace
    source: str = "auto"
    families: tuple[int, ...] = (4, 6)
    proc: str = "/proc"


@record
class Collection:
    """The streamed sockets, and what was learnt about how they were read."""

    sockets: Iterator[Socket]
    source: str
    owner_map: owners.OwnerMap | None
    notes: list[str] = field(default_factory=list)


def _bound(flt: Filter, only: bool, names: tuple) -> Filter:
    """The filter with this thread's namespace's facts: interface indexes, port range.

    only: this is the one namespace read, so an unknown device is a usage error
    (as ss's "Cannot parse device"); across several, it matches nothing there.
    """
    if flt.expr is None:
        return flt
    devices: dict[str, Optional[int]] = {}
    for name in flt.devices():
        try:
            devices[name] = socket.if_nametoindex(name)
        except (OSError, ValueError, UnicodeError):
            devices[name] = None
            if only and device_number(name) is None:
                raise UsageError(f"dev {name!r}: no such interface here (`ip link` lists "
                                 "them; an index number works too)") from None
    hosts, cgroups = names
    return flt.bind(devices, _port_range() if flt.needs_sock_diag else DEFAULT_PORT_RANGE,
                    hosts, cgroups)


def _port_range() -> tuple[int, int]:
    """net.ipv4.ip_local_port_range of this thread's namespace (ss's is_ephemeral)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split()[:2])
        return low, high
    except (OSError, ValueError):
        return DEFAULT_PORT_RANGE


def open_sock_diag(query: Query) -> tuple[list[tuple[netns.Namespace, socket.socket]],
                                          list[str]] | None:
    """One sock_diag socket per namespace of the query (its filter ignored), and
    the notes of namespaces that vanished; None where sock_diag is unavailable.
    The caller closes the sockets (collect.state_tally reads them)."""
    try:
        source, readers, notes = _open_sources(Query(namespaces=query.namespaces,
                                                     source="sock_diag", proc=query.proc))
    except OSError:
        return None
    return [(ns, reader) for ns, reader, _flt in readers], notes


def _open_sources(query: Query) -> tuple[str, list[tuple[netns.Namespace, Any, Filter]],
                                          list[str]]:
    """Open one reader per namespace (a sock_diag socket or procfs files), each
    with the filter bound to that namespace."""
    spaces = query.namespaces or (netns.current(query.proc),)
    notes: list[str] = []
    source = query.source
    names = filter_names.look_up(query.filter)
    if source in ("auto", "sock_diag"):
        opened = []
        try:
            for ns in spaces:
                with contextlib.ExitStack() as inside:
                    if _enter(inside, ns, query.proc, len(spaces) > 1, notes):
                        bound = _bound(query.filter, len(spaces) == 1, names)
                        opened.append((ns, netlink.open_sock_diag(), bound))
            return "sock_diag", opened, notes
        except OSError as exc:
            for _ns, s, _f in opened:
                s.close()
            if source == "sock_diag":
                raise
            notes.append(f"sock_diag unavailable ({exc.strerror or exc}): read /proc/net/tcp "
                         "instead (no cookie, tcp_info, memory or shutdown bits)")
    if query.filter.needs_sock_diag:
        raise HalfopenError("dev, fwmark, cgroup and autobound need sock_diag: "
                            "/proc/net/tcp has no device, mark, cgroup or port lock")
    files = []
    for ns in spaces:
        with contextlib.ExitStack() as inside:
            if _enter(inside, ns, query.proc, len(spaces) > 1, notes):
                files.append((ns, _open_tables(query.families),
                              _bound(query.filter, len(spaces) == 1, names)))
    return "procfs", files, notes


def _enter(stack: contextlib.ExitStack, ns: netns.Namespace, proc: str, several: bool,
           notes: list[str]) -> bool:
    """Enter `ns` for the rest of `stack`; False (and a note) if it vanished meanwhile.

    With several namespaces (--all-netns) one deleted between listing and
    reading must not stop the others: its nsfs file is gone (ENOENT) or the
    /run/netns bind mount under it was removed and setns(2) finds a plain file
    (EINVAL). With one namespace asked for by name, that is the user's error.
    """
    try:
        stack.enter_context(netns.entered(ns, proc))
    except (NamespaceError, OSError) as exc:
        if not several or isinstance(exc, PermissionError):
            raise
        notes.append(f"network namespace {ns.name} vanished during the run; the others "
                     f"were read ({exc})")
        return False
    return True


def _open_tables(families: tuple[int, ...]) -> list[tuple[int, IO[str]]]:
    tables: list[tuple[int, IO[str]]] = []
    for family in families:
        path = "/proc/thread-self/net/tcp" + ("" if family == 4 else "6")
        try:
            # opened inside the namespace, read after leaving it; the Collection closes it
            tables.append((family, open(path)))  # noqa: SIM115
        except FileNotFoundError:  # kernel without IPv6
            continue
    return tables


def collect(query: Query, owner_map: owners.OwnerMap | None = None) -> Collection:
    """Start reading; the returned Collection streams its sockets lazily.

    owner_map: owners already scanned (the doctor's one fd scan), used instead
    of scanning again when the query wants owners.
    """
    source, readers, notes = _open_sources(query)
    notes[:0] = query.filter.notes  # how the filter read odd values (a port past 65535)
    if not (query.owners or query.filter.needs_owners):
        owner_map = None
    elif owner_map is None:
        owner_map = owners.scan(query.proc, query.filter.required_pids())
    if owner_map is not None and owner_map.denied:
        notes.append(owners.denied_note(owner_map.denied))
    stream = _stream(source, readers, query, owner_map)
    return Collection(stream, source, owner_map, notes)


def _listening(source, reader, families, netns_name, addresses) -> direction.Listening:
    """The namespace's listening ports, whatever the query's filter keeps (collect.direction)."""
    if source != "sock_diag":
        return direction.from_procfs(reader)
    return direction.Listening.of(
        s for family, number in ((socket.AF_INET, 4), (socket.AF_INET6, 6)) if number in families
        for s in diag_replies.dump_sockets(reader, family, direction.LISTEN_MASK, 0, b"",
                                        netns_name, addresses))


def _stream(source, readers, query, owner_map) -> Iterator[Socket]:
    ext = diag_replies.EXT_INFO | diag_replies.EXT_SKMEMINFO if query.tcp_info else 0
    owners_of = owner_map.owners.getter() if owner_map is not None else None
    addresses = diag_replies.AddressCache()
    try:
        for ns, reader, flt in readers:
            kernel = bytecode.compile_filter(flt)
            states = kernel.states
            exact = flt.is_empty or (source == "sock_diag" and kernel.exact)
            check = None if exact else flt.predicate(source == "sock_diag" and kernel.whole)
            listening = _listening(source, reader, query.families, ns.name, addresses)
            ports, direction_of = listening.ports, listening.direction
            if source == "sock_diag":
                parts = [diag_replies.dump_sockets(reader, family, states, ext, kernel.bytecode,
                                                ns.name, addresses)
                         for family, number in ((socket.AF_INET, 4), (socket.AF_INET6, 6))
                         if number in query.families and number in kernel.families]
            else:
                parts = [procfs_tcp.parse_table(f, family, ns.name, f.name)
                         for family, f in reader if family in kernel.families]
            for part in parts:
                for sock in part:
                    if states != ALL_STATES and not states >> sock.state & 1:
                        continue  # procfs path: the kernel did not filter
                    if owners_of is not None and sock.inode:  # mini sockets: no inode
                        sock.owners = owners_of(sock.inode)
                    if sock.state != LISTEN:  # the common case (not a listening port) inlined
                        sock.direction = (OUTBOUND if sock.local_port not in ports
                                          else direction_of(sock))
                    if check is None or check(sock):
                        yield sock
    finally:  # also when the reader stops early: close every namespace's source
        for _ns, reader, _flt in readers:
            if source == "sock_diag":
                reader.close()
            else:
                for _family, f in reader:
                    f.close()
