"""Apply the cure: read a fact, plan "current -> wanted or already set", apply on request.

    failures.py      the fix errors (ProcessGone, AccessDenied, ...) and their exit codes
    borrowed_fds.py  pidfd_open / pidfd_getfd: a second fd on another process's socket
    retrofit.py      keepalive across a process's TCP sockets: plan, apply, undo
    destroy.py       SOCK_DESTROY of sockets a filter named, with per-socket results
    sysctl.py        the sysctls halfopen may set: catalog, validation, read, write
    namespace.py     a finding's "netns" word -> a Namespace to enter; is it still the same one
    rlimit.py        RLIMIT_NOFILE of another process via prlimit(2), and the
                     systemd / limits.conf lines when the hard limit must move
    journal.py       /var/lib/halfopen/journal.jsonl: write-ahead intent, done, undo
    persist.py       /etc/sysctl.d/60-halfopen.conf: backup and write via halfopen.fsio
    actions/         one class per action (sysctl, prlimit, keepalive, kill, persist):
                     read facts, compare -> Step (its typed record), apply, undo,
                     settles_in_s; FIXES / BY_KIND: the one registry
    plan.py          Findings' fixes -> Steps: each fix's action plans it
    apply.py         carry Steps out with a journal (each step's action); roll back
    verify.py        after apply: cured, not-yet (settles_in_s), not-cured
    safety.py        what kill, keepalive and fix leave alone
    targets.py       the sockets a kill's filter matches
"""
