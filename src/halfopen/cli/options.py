"""Options several commands share: namespace selection and the filter words."""

from __future__ import annotations

from collections.abc import Callable

import click

from ..collect import netns
from ..errors import UsageError


def namespace_options(func: Callable) -> Callable:
    func = click.option("--all-netns", is_flag=True,
                        help="Every network namespace of running processes and /run/netns.")(func)
    func = click.option("--netns-pid", type=int, metavar="PID",
                        help="The network namespace of process PID.")(func)
    func = click.option("--netns", "netns_name", metavar="NAME",
                        help="A namespace from /run/netns (ip netns).")(func)
    return func


def resolve_namespaces(netns_name: str | None, netns_pid: int | None,
                       all_netns: bool) -> tuple[netns.Namespace, ...]:
    chosen = sum(x is not None and x is not False for x in (netns_name, netns_pid, all_netns))
    if chosen > 1:
        raise UsageError("choose one of --netns, --netns-pid, --all-netns")
    if netns_name is not None:
        return (netns.named(netns_name),)
    if netns_pid is not None:
        return (netns.of_pid(netns_pid),)
    if all_netns:
        return tuple(netns.all_namespaces())
    return ()


filter_argument = click.argument("filter_words", nargs=-1, metavar="[FILTER]...")
