"""200,000 sockets through one Tally: what it keeps stays under its bounds.

Not a timing test: it counts the Socket objects still alive and the keys each
group tracks. The sockets are made to break every bound at once: one process
holding CLOSE_WAIT sockets from 50,000 peers, idle connections without
keepalive to 50,000 peers, SYN_RECV from 50,000 sources, TIME_WAIT to 50,000
destinations.
"""

from __future__ import annotations

import gc

from halfopen.diagnose import bounded
from halfopen.diagnose.closewait import CloseWaitGroup
from halfopen.diagnose.deadpeer import PeerGroup
from halfopen.diagnose.report import new_tally
from halfopen.model.socket import INBOUND, OUTBOUND, Owner, Socket, TcpInfo

COUNT = 200_000
EST, SYN_RECV, TIME_WAIT, CLOSE_WAIT, LISTEN = 1, 3, 6, 8, 10


def _sockets(count: int):
    info = TcpInfo(*([0] * 32))._replace(last_ack_recv=3_600_000, last_data_recv=3_600_500,
                                         last_data_sent=3_600_000)
    owner = (Owner(4242, "leaky", 7),)
    yield Socket(4, LISTEN, "0.0.0.0", 80, "0.0.0.0", 0, 0, 128, 0, 0, 0, 0, 1, 1,
                 owners=owner)
    for i in range(count):
        peer = f"11.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
        kind = i % 4
        if kind == 0:  # a CLOSE_WAIT leak, each from its own peer
            yield Socket(4, CLOSE_WAIT, "10.0.0.1", 80, peer, 40000 + i % 20000, 1, 0, 0, 0,
                         0, 0, i + 2, i + 2, tcp_info=info, owners=owner, direction=INBOUND)
        elif kind == 1:  # idle without keepalive, each to its own service
            yield Socket(4, EST, "10.0.0.1", 32768 + i % 28000, peer, 443, 0, 0, 0, 0, 0, 0,
                         i + 2, i + 2, tcp_info=info, owners=owner, direction=OUTBOUND)
        elif kind == 2:  # a SYN flood from spoofed sources
            yield Socket(4, SYN_RECV, "10.0.0.1", 80, peer, 50000, 0, 0, 0, 0, 0, 0, 0, 0)
        else:  # TIME_WAIT, each to its own destination
            yield Socket(4, TIME_WAIT, "10.0.0.1", 32768 + i % 28000, peer, 5432, 0, 0, 0, 0,
                         0, 0, 0, 0, direction=OUTBOUND)


def _alive_sockets() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, Socket))


def test_200k_sockets_keep_only_bounded_state():
    before = _alive_sockets()
    table = new_tally()
    for s in _sockets(COUNT):
        table.add(s)
    del s  # the loop's last socket
    assert table.count == COUNT + 1
    # only the listener is kept whole
    assert _alive_sockets() - before == len(table.listeners) == 1

    (key, cw), = table.rule("close-wait-leak").groups.items()
    assert key == ("host", 4242, "leaky") and cw.total == COUNT // 4
    pile = cw.server
    assert isinstance(pile, CloseWaitGroup) and cw.client is None
    assert pile.stuck == COUNT // 4  # the counts stay exact past the bounds
    assert len(pile.peers) == bounded.KEYS_PER_GROUP and pile.peers.overflowed
    assert pile.peers.total == COUNT // 4
    assert len(pile.lows) == COUNT // 4 and pile.lows.itemsize == 8  # floats, not objects

    (ka,) = table.rule("keepalive-off").groups.values()
    hits = ka.client
    assert isinstance(hits, PeerGroup) and hits.count == COUNT // 4
    assert len(hits.peers) == bounded.KEYS_PER_GROUP and len(hits.ports) <= bounded.KEYS_PER_GROUP

    (syn,) = table.syn_recv.values()
    assert syn.count == COUNT // 4 and len(syn.sources) == COUNT // 4  # under DISTINCT: exact

    space = table.spaces["host"]
    assert len(space.dests) == bounded.DESTINATIONS and space.dests_overflowed
    assert sum(len(d.ports) for d in space.dests.values()) <= COUNT
    assert len(space.local_addrs.members) <= bounded.DISTINCT
    assert space.states[CLOSE_WAIT] == space.states[TIME_WAIT] == COUNT // 4

    notes = table.notes()
    assert any("time-wait-pressure" in n for n in notes)
    assert any(n.startswith("close-wait-leak") for n in notes)
    assert any(n.startswith("keepalive-off") for n in notes)


def test_under_the_bounds_no_note():
    table = new_tally()
    for s in _sockets(4000):
        table.add(s)
    assert table.notes() == []
