"""The fix actions, one class a module, and the one registry of them.

    base.py              Step, Done, Host; Action (apply, undo, settles_in_s) and
                         FindingAction (+ read facts, compare, plan)
    who.py               is it still the process / namespace diagnosed: facts, pure checks
    sysctl_action.py     SetSysctl         a key under /proc/sys, in the finding's namespace
    prlimit_action.py    RaiseNofile       RLIMIT_NOFILE of a running process
    keepalive_action.py  TurnOnKeepalive   keepalive onto a running process's sockets
    kill_action.py       KillSockets       SOCK_DESTROY of the sockets a filter names
    persist_action.py    PersistSysctls    the host's sysctls into /etc/sysctl.d

Adding an action: its proposal record in model/fixes.py (what a rule writes),
its module here, and one entry in FIXES below.
"""

from __future__ import annotations

from .base import Action, Done, FindingAction, Host, Step
from .keepalive_action import TurnOnKeepalive
from .kill_action import KillSockets
from .persist_action import PersistSysctls
from .prlimit_action import RaiseNofile
from .sysctl_action import SetSysctl

# the actions a finding's fix may name, by that name (Fix.action, Step.action)
FIXES: dict[str, FindingAction] = {a.name: a for a in (SetSysctl(), RaiseNofile(),
                                                        TurnOnKeepalive(), KillSockets())}
PERSIST = PersistSysctls()
# every action by the "kind" of the journal lines it writes: what rollback dispatches on
BY_KIND: dict[str, Action] = {a.kind: a for a in (*FIXES.values(), PERSIST)}

__all__ = ["BY_KIND", "FIXES", "PERSIST", "Action", "Done", "FindingAction", "Host", "Step"]
