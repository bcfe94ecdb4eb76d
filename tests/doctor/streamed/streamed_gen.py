"""Generated snapshots for the streamed doctor's golden tests (seeded, reproducible).

Fakes on purpose: a mix of states, owners, sides, ages and queues no live test
can hold at once (CLOSE_WAIT piles on both sides, dead peers, idle connections
without keepalive, SYN_RECV under listeners, FIN_WAIT2 orphans, TIME_WAIT to
one destination), in two namespaces, with the host facts of a case file.
"""

from __future__ import annotations

import random

from halfopen.model.snapshot import Snapshot
from halfopen.model.socket import INBOUND, OUTBOUND, Owner, Socket, TcpInfo

# TcpState numbers (include/net/tcp_states.h)
EST, SYN_RECV, FIN_WAIT2, TIME_WAIT, CLOSE_WAIT, LISTEN = 1, 3, 5, 6, 8, 10
# timer numbers as sock_diag reports them (idiag_timer)
TIMER_OFF, TIMER_ON, TIMER_KEEPALIVE = 0, 1, 2
PROCS = [(812, "nginx"), (900, "java"), (901, "python3"), (1200, "envoy")]


def _info(rng: random.Random, ack_ms: int, data_ms: int, retrans: int = 0,
          probes: int = 0) -> TcpInfo:
    return TcpInfo(*([0] * 32))._replace(
        retransmits=retrans, probes=probes, backoff=retrans,
        last_data_sent=data_ms, last_ack_recv=ack_ms, last_data_recv=data_ms,
        rto=200000, snd_mss=1448, rcv_mss=1448)


def sockets(seed: int, count: int, spaces: tuple[str, ...] = ("host", "blue")):
    """`count` sockets (plus listeners), yielded one at a time."""
    rng = random.Random(seed)
    cookie = 0
    for netns in spaces:
        for port, (pid, comm) in ((80, PROCS[0]), (8080, PROCS[1]), (40500, PROCS[3])):
            cookie += 1
            backlog = rng.choice((5, 128, 511))
            yield Socket(4, LISTEN, "0.0.0.0", port, "0.0.0.0", 0, rng.randrange(0, backlog + 2),
                         backlog, 0, 0, 0, 0, cookie, cookie, netns,
                         owners=(Owner(pid, comm, 3),))
    for i in range(count):
        cookie += 1
        netns = spaces[i % len(spaces)] if rng.random() < 0.8 else spaces[0]
        pid, comm = rng.choice(PROCS)
        owners = () if rng.random() < 0.1 else (Owner(pid, comm, 10 + i % 1000),)
        if owners and rng.random() < 0.05:
            owners = owners + (Owner(pid + 1, comm, 11),)
        out = rng.random() < 0.4
        peer = rng.choice(("10.0.0.9", "127.0.0.1", "198.18.0.7", "2001:db8::5",
                           f"10.0.0.{rng.randrange(1, 40)}"))
        family = 6 if ":" in peer else 4
        local = "::1" if family == 6 else rng.choice(("10.0.0.1", "127.0.0.1"))
        if out:
            lport, pport = rng.randrange(32768, 61000), rng.choice((5432, 443, 80, 6379))
        else:
            lport, pport = rng.choice((80, 8080, 40500)), rng.randrange(32768, 61000)
        r = rng.random()
        timer, tretrans, info = TIMER_OFF, 0, None
        age_ms = int(rng.expovariate(1 / 400000))
        recv_q = send_q = 0
        if r < 0.3:
            state = CLOSE_WAIT
            recv_q = rng.choice((0, 0, 1, 512))
            info = None if rng.random() < 0.05 else _info(rng, age_ms, age_ms + 500)
        elif r < 0.6:
            state = EST
            kind = rng.random()
            if kind < 0.2:
                timer, tretrans = TIMER_ON, rng.randrange(0, 9)
                send_q = rng.randrange(0, 90000)
                info = _info(rng, age_ms, age_ms, retrans=tretrans)
            elif kind < 0.35:
                timer, tretrans = TIMER_KEEPALIVE, rng.randrange(0, 9)
                info = _info(rng, age_ms, age_ms, probes=tretrans)
            else:
                info = None if rng.random() < 0.05 else _info(rng, age_ms, age_ms * 2)
                send_q = rng.choice((0, 0, 0, rng.randrange(1, 200000)))
        elif r < 0.7:
            state, owners = SYN_RECV, ()
            lport, out = rng.choice((80, 8080, 40500)), False
        elif r < 0.85:
            state = FIN_WAIT2
            if rng.random() < 0.7:
                owners = ()
        else:
            state, owners = TIME_WAIT, ()
            peer, pport, family, local = "10.0.0.9", 5432, 4, "10.0.0.1"
            lport, out = rng.randrange(32768, 61000), True
        direction = OUTBOUND if out else INBOUND
        yield Socket(family, state, local, lport, peer, pport, recv_q, send_q, timer, 0,
                     tretrans, 1000, cookie, cookie, netns, tcp_info=info, owners=owners,
                     direction=direction)


def snapshot(seed: int, count: int, base: Snapshot) -> Snapshot:
    """A generated socket table over `base`'s host facts and processes."""
    spaces = tuple(dict.fromkeys([*base.namespaces, "host", "blue"]))
    socks = list(sockets(seed, count, spaces))
    return Snapshot(host=base.host, kernel=base.kernel, taken_at=base.taken_at,
                    source=base.source, namespaces=base.namespaces, sockets=socks,
                    processes=base.processes, notes=base.notes, host_facts=base.host_facts)
