"""Network namespaces: find them, name them, and enter one for a while.

A namespace is found by the inode of its nsfs file (/proc/PID/ns/net,
/run/netns/NAME: `ip netns` bind-mounts them there); inodes are reused, so
before acting halfopen compares its cookie (`cookie`), which is not. Entering one uses
setns(2) on the calling thread; sockets opened inside stay in it.

An unnamed namespace is named after its Kubernetes pod when a process in it
runs in one ("pod:shop/web-7f9": a pod's containers share its namespace),
else "net:[INODE]".
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator

from halfopen.records import record

from ..errors import NamespaceError, NotPermitted
from ..kernel import current_identity, procfs
from ..model.host import HOST as HOST  # re-exported: the host namespace's label
from .containers import Resolver

CLONE_NEWNET = 0x40000000  # include/uapi/linux/sched.h
NETNS_RUN_DIR = "/run/netns"
POD_PREFIX = "pod:"

_libc = ctypes.CDLL(None, use_errno=True)


@record(frozen=True)
class Namespace:
    name: str  # "host", the /run/netns name, "pod:NAMESPACE/POD" or "net:[INODE]"
    inode: int
    path: str  # an nsfs file to open for setns


def _inode(path: str) -> int:
    return os.stat(path).st_ino


def current(proc: str = "/proc") -> Namespace:
    return Namespace(HOST, procfs.ns_inode("thread-self", proc), procfs.ns_path("thread-self", proc))


def named(name: str, run_dir: str = NETNS_RUN_DIR) -> Namespace:
    if name.startswith(POD_PREFIX):
        for space in all_namespaces(run_dir=run_dir):
            if space.name == name:
                return space
        raise NamespaceError(f"no running process is in pod {name[len(POD_PREFIX):]!r} "
                             "(pod:NAMESPACE/POD, as `halfopen sockets --all-netns` names them)")
    path = os.path.join(run_dir, name)
    if "/" in name or not os.path.exists(path):
        have = ", ".join(sorted(list_named(run_dir))) or "none"
        raise NamespaceError(f"unknown network namespace {name!r}; in {run_dir}: {have}")
    return Namespace(name, _inode(path), path)


def of_pid(pid: int, proc: str = "/proc") -> Namespace:
    path = procfs.ns_path(pid, proc)
    try:
        inode = procfs.ns_inode(pid, proc)
    except FileNotFoundError:
        raise NamespaceError(f"no process with pid {pid}") from None
    except PermissionError:
        raise NotPermitted(f"may not read the network namespace of pid {pid} (not root?)") \
            from None
    return Namespace(label(inode, proc, pid=pid), inode, path)


def list_named(run_dir: str = NETNS_RUN_DIR) -> dict[str, int]:
    try:
        names = os.listdir(run_dir)
    except FileNotFoundError:
        return {}
    found = {}
    for name in names:
        with contextlib.suppress(OSError):
            found[name] = _inode(os.path.join(run_dir, name))
    return found


def label(inode: int, proc: str = "/proc", run_dir: str = NETNS_RUN_DIR,
          pid: int | None = None) -> str:
    """The name a person would use: 'host', the ip-netns name, the pod of `pid` (a
    process inside it) as 'pod:NAMESPACE/POD', or 'net:[INODE]'."""
    if inode == procfs.ns_inode("thread-self", proc):
        return HOST
    for name, ino in list_named(run_dir).items():
        if ino == inode:
            return name
    return (pod_label(Resolver(proc), pid) if pid is not None else "") or f"net:[{inode}]"


def pod_label(resolver: Resolver, pid: int) -> str:
    """'pod:shop/web-7f9' when `pid` runs in a pod whose name is known, else ''."""
    box = resolver.of_pid(pid)
    return POD_PREFIX + box.pod_ref if box is not None and box.pod else ""


def all_namespaces(proc: str = "/proc", run_dir: str = NETNS_RUN_DIR) -> list[Namespace]:
    """Every distinct namespace of running processes and of /run/netns."""
    own = current(proc)
    found: dict[int, Namespace] = {own.inode: own}
    for name, inode in sorted(list_named(run_dir).items()):
        found.setdefault(inode, Namespace(name, inode, os.path.join(run_dir, name)))
    resolver = Resolver(proc)
    taken = {ns.name for ns in found.values()}
    for pid in procfs.pids(proc):
        path = procfs.ns_path(pid, proc)
        try:
            inode = procfs.ns_inode(pid, proc)
        except OSError:  # gone, or not ours to see
            continue
        if inode in found:
            continue
        # A pod being replaced can have two namespaces for a moment: the
        # second keeps its inode name, so a name never means two namespaces.
        name = pod_label(resolver, pid)
        name = name if name and name not in taken else f"net:[{inode}]"
        taken.add(name)
        found[inode] = Namespace(name, inode, path)
    return list(found.values())


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def entered(ns: Namespace, proc: str = "/proc") -> Iterator[None]:
    """Run the body inside `ns` (this thread only), then come back."""
    if ns.name == HOST and ns.inode == procfs.ns_inode("thread-self", proc):
        yield
        return
    home = os.open(procfs.ns_path("thread-self", proc), os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            target = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NamespaceError(f"network namespace {ns.name} is gone") from None
        try:
            _setns(target)
        except PermissionError:
            raise NotPermitted(f"may not enter network namespace {ns.name}: "
                               "setns needs CAP_SYS_ADMIN") from None
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)


def cookie(ns: Namespace, proc: str = "/proc") -> int | None:
    """The namespace's SO_NETNS_COOKIE (never reused), None on kernels before 5.14."""
    with entered(ns, proc):
        return current_identity.netns_cookie()


@contextlib.contextmanager
def pinned(ns: Namespace) -> Iterator[Namespace]:
    """`ns` held open: the Namespace yielded names that very namespace for as long as
    the body runs, even if its /run/netns name is deleted and taken meanwhile."""
    try:
        fd = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NamespaceError(f"network namespace {ns.name} is gone") from None
    try:
        yield Namespace(ns.name, os.fstat(fd).st_ino, f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
