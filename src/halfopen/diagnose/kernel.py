"""kernel-warning and kernel-tuning.

kernel-warning: the TCP / netfilter / OOM lines the collector kept from the
  kernel log in the last RECENT_S (24 h), grouped by kind. The rule that owns a
  kind (syn-flood, conntrack-exhaustion, ...) judges the present; this one
  keeps the record: info, or warning for a kind no other rule owns that
  appeared in the last hour.
kernel-tuning: TCP tunables set to risky values (RISKY below, each with the
  reason), one finding per value; plus one info finding listing every value
  that differs from the kernel default.
"""

from __future__ import annotations

from collections import Counter

from ..model.finding import Finding
from ..model.host import KERNEL_DEFAULTS, Tunables
from ..model.sysctls import SYSCTLS, default_numbers
from .common import ev, subject, sysctl_fix
from .context import Context, Unavailable

RECENT_S = 24 * 3600
HOUR_S = 3600
OWNED_KINDS = {"syn-flood", "conntrack-full", "tcp-memory", "orphans", "socket-memory",
               "oom-kill"}
KIND_OWNER = {"syn-flood": "syn-flood or accept-queue-overflow",
              "conntrack-full": "conntrack-exhaustion", "tcp-memory": "tcp-memory-pressure",
              "socket-memory": "tcp-memory-pressure", "orphans": "orphan-pressure",
              "oom-kill": "memory-exhaustion"}

WHY_KLOG = (
    "The kernel writes a line when it drops work it was asked to do: SYNs when a listen "
    "queue overflows (\"Possible SYN flooding\", also printed when the accept queue is "
    "full), packets of new flows when the conntrack table is full, buffers when TCP "
    "memory runs out, orphans past tcp_max_orphans, processes when RAM runs out. These "
    "lines date past episodes; the counters and queues other rules read show whether it "
    "is still happening. A TIME_WAIT bucket overflow prints nothing on current kernels "
    "(watch TcpExt.TCPTimeWaitOverflow)."
)


def check_kernel_log(ctx: Context) -> list[Finding]:
    hf = ctx.facts
    if not hf.kernel_log_source:
        raise Unavailable(ctx.unavailable("kernel-log") or "kernel log not read")
    recent = [line for line in hf.kernel_log if ctx.now - line.wall_time <= RECENT_S]
    findings = []
    for kind, count in Counter(line.kind for line in recent).most_common():
        lines = [line for line in recent if line.kind == kind]
        last = lines[-1]
        within_hour = ctx.now - last.wall_time <= HOUR_S
        severity = "warning" if kind not in OWNED_KINDS and within_hour else "info"
        ago = int(ctx.now - last.wall_time)
        findings.append(Finding(
            id="kernel-warning", severity=severity, cause="kernel",
            title=f"kernel log: {count} \u00d7 {kind} in the last 24 h, last {ago // 60} min ago",
            subject=subject("host", port=last.port),
            evidence=[ev("lines", count, hf.kernel_log_source),
                      ev("last_line", last.text, hf.kernel_log_source,
                         "host-wide: a line names a port or a process, never the network "
                         "namespace, so it may belong to any of them"),
                      ev("owner_rule", KIND_OWNER.get(kind, "-"), "halfopen",
                         "the rule that judges whether it still happens")],
            fixes=[], why=WHY_KLOG))
    return findings


# name -> (test on the Tunables, severity, reason, value to set)
RISKY = [
    ("net.ipv4.tcp_syncookies", lambda t: t.tcp_syncookies == 0, "warning",
     "SYN cookies off: a full SYN queue drops connection attempts (SYN flood, or a full "
     "accept queue) instead of answering with cookies", "1"),
    ("net.ipv4.tcp_abort_on_overflow", lambda t: t.tcp_abort_on_overflow == 1, "warning",
     "a full accept queue resets clients at once instead of letting them retry: a burst "
     "becomes errors", "0"),
    ("net.ipv4.tcp_retries2", lambda t: t.tcp_retries2 is not None and t.tcp_retries2 > 15,
     "warning", "a dead peer with unacknowledged data is kept even longer than the default "
     "~15 minutes", "15"),
    ("net.ipv4.tcp_retries2", lambda t: t.tcp_retries2 is not None and t.tcp_retries2 < 5,
     "warning", "connections break on a few seconds of packet loss (RFC 1122 asks for at "
     "least 100 s)", "8"),
    ("net.ipv4.tcp_tw_reuse", lambda t: t.tcp_tw_reuse == 1 and t.tcp_timestamps == 0,
     "warning", "tcp_tw_reuse relies on TCP timestamps, which are off", "2"),
    ("net.ipv4.tcp_timestamps", lambda t: t.tcp_timestamps == 0, "info",
     "timestamps off: no PAWS protection, no safe TIME_WAIT reuse, worse RTT estimates", "1"),
    ("net.ipv4.tcp_max_tw_buckets",
     lambda t: t.tcp_max_tw_buckets is not None and t.tcp_max_tw_buckets < 10000, "warning",
     "TIME_WAIT sockets are destroyed early past this many: late segments of old "
     "connections can hit new ones", None),
    ("net.ipv4.tcp_keepalive_time",
     lambda t: t.tcp_keepalive_time is not None
     and t.tcp_keepalive_time > default_numbers("net.ipv4.tcp_keepalive_time")[0], "info",
     "keepalive finds a dead idle peer even later than the default 2 h",
     SYSCTLS["net.ipv4.tcp_keepalive_time"].default),
    ("net.ipv4.ip_local_port_range",
     lambda t: t.ip_local_port_range is not None
     and t.ip_local_port_range[1] - t.ip_local_port_range[0] + 1 < 10000, "info",
     "fewer than 10,000 ephemeral ports per destination",
     SYSCTLS["net.ipv4.ip_local_port_range"].default),
    ("net.core.somaxconn", lambda t: t.somaxconn is not None and t.somaxconn < 1024, "info",
     "caps every listen() backlog low: bursts overflow accept queues", "4096"),
]


WHY_TUNING = (
    "These TCP sysctls are set to values that change how the kernel treats half-open "
    "connections and full queues. Each finding names what the value does; most are "
    "leftovers of old tuning guides. The kernel defaults are the comparison, and a "
    "sysctl set in a network namespace applies to that namespace only."
)


def check_tuning(ctx: Context) -> list[Finding]:
    findings = []
    any_tunables = False
    for ns in ctx.namespaces():
        t: Tunables | None = ns.tunables
        if t is None:
            continue
        any_tunables = True
        for name, test, severity, reason, value in RISKY:
            if not test(t):
                continue
            current = t.raw.get(name, "?")
            default = KERNEL_DEFAULTS.get(name)
            fixes = [sysctl_fix(name, value, ns.netns, "back to the kernel default")] \
                if value is not None else []
            findings.append(Finding(
                id="kernel-tuning", severity=severity, cause="kernel",
                title=f"{name} = {current} in netns {ns.netns}: {reason.split(':')[0]}",
                subject=subject(ns.netns, sysctl=name),
                evidence=[ev(name, current, "/proc/sys/" + name.replace(".", "/")),
                          ev("kernel_default", default.value if default else None,
                             default.source if default else "")],
                fixes=fixes, why=f"{reason}. {WHY_TUNING}"))
        changed = t.non_default()
        if changed:
            findings.append(Finding(
                id="kernel-tuning", severity="info", cause="kernel",
                title=f"netns {ns.netns}: {len(changed)} TCP sysctls differ from the kernel default",
                subject=subject(ns.netns),
                evidence=[ev(name, value, "/proc/sys/" + name.replace(".", "/"),
                             f"default {d.value} ({d.source})")
                          for name, (value, d) in sorted(changed.items())],
                fixes=[], why=WHY_TUNING))
    if not any_tunables:
        raise Unavailable(ctx.unavailable("tunables", "host") or "TCP sysctls not read")
    return findings
