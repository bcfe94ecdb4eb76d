"""Compile a Filter into what the kernel can run: a state mask and bytecode.

The bytecode is inet_diag's little filter language (include/uapi/linux/
inet_diag.h: struct inet_diag_bc_op, inet_diag_hostcond), checked by
inet_diag_bc_audit() and run by inet_diag_bc_run() in net/ipv4/inet_diag.c.
Each op jumps `yes` bytes forward when its condition holds, else `no` bytes;
the program accepts a socket when it lands exactly on its end.

Compiled blocks follow iproute2's ssfilter_bytecompile(): a block of length L
ends at L when true and at L + 4 when false, so blocks concatenate for "and",
and a JMP glues "or" and "not". Unlike ss, `dev` is compiled too
(INET_DIAG_BC_DEV_COND, which ss leaves to userspace).
"""

from __future__ import annotations

import socket
import struct

from halfopen.records import record

from ..model.filter import (
    And,
    AutoBound,
    CgroupIs,
    DevIs,
    Expr,
    Filter,
    HostIs,
    HostName,
    MarkIs,
    Not,
    Or,
    OwnerIs,
    PortCmp,
    StateIs,
    _conjuncts,
)
from ..model.states import ALL_STATES

# enum in include/uapi/linux/inet_diag.h (INET_DIAG_BC_*)
BC_JMP = 1
BC_S_GE, BC_S_LE, BC_D_GE, BC_D_LE = 2, 3, 4, 5
BC_AUTO = 6
BC_S_COND, BC_D_COND = 7, 8
BC_DEV_COND, BC_MARK_COND = 9, 10
BC_S_EQ, BC_D_EQ = 11, 12
BC_CGROUP_COND = 13

OP = struct.Struct("=BBH")  # code, yes, no
HOSTCOND = struct.Struct("=BBxxi")  # family, prefix_len, port (-1: any)
MARKCOND = struct.Struct("=II")  # struct inet_diag_markcond: mark, mask
# The program travels in one netlink attribute (u16 length, 4 of them header).
MAX_BYTECODE = 0xFFFF - 4
KERNEL_LEAVES = (PortCmp, HostIs, DevIs, MarkIs, CgroupIs, AutoBound)


@record(frozen=True)
class KernelFilter:
    """What the kernel is asked to filter, and whether that is the whole filter."""

    states: int
    bytecode: bytes
    exact: bool  # True: userspace need not check the filter again
    families: tuple[int, ...] = (4, 6)  # an inet:/inet6: prefix narrows the dump
    whole: bool = True  # the bytecode runs the whole filter (its kernel reading)


def compile_filter(flt: Filter) -> KernelFilter:
    """The kernel's share of a filter already bound to one namespace (Filter.bind)."""
    families = (flt.family,) if flt.family is not None else (4, 6)
    expr = flt.expr
    if expr is None:
        return KernelFilter(ALL_STATES, b"", True, families)
    kernel_expr = _kernel_part(expr)
    whole = _is_exact(expr)
    try:
        code = _compile(kernel_expr) if kernel_expr is not None else b""
    except struct.error:  # a jump beyond 64 KiB (u16 yes/no)
        code = b"\0" * (MAX_BYTECODE + 1)
    if len(code) > MAX_BYTECODE:  # too long for the kernel: userspace checks it all
        code, whole = b"", False
    # ss's two readings (Filter.dual): the kernel gives one, userspace checks the other
    exact = whole and not flt.dual
    return KernelFilter(_state_superset(expr), code, exact, families, whole)


def _has(expr: Expr, kinds: tuple[type, ...]) -> bool:
    if isinstance(expr, (And, Or)):
        return _has(expr.left, kinds) or _has(expr.right, kinds)
    if isinstance(expr, Not):
        return _has(expr.inner, kinds)
    return isinstance(expr, kinds)


def _is_exact(expr: Expr) -> bool:
    """Exact when no owner words and state words only as top-level conjuncts."""
    return all(isinstance(c, StateIs) or not _has(c, (StateIs, OwnerIs, HostName))
               for c in _conjuncts(expr))


def _state_superset(expr: Expr) -> int:
    """A state mask holding every state the filter could accept."""
    if isinstance(expr, StateIs):
        return expr.mask
    if isinstance(expr, And):
        return _state_superset(expr.left) & _state_superset(expr.right)
    if isinstance(expr, Or):
        return _state_superset(expr.left) | _state_superset(expr.right)
    return ALL_STATES


def _kernel_part(expr: Expr) -> Expr | None:
    """The loosest filter made only of words the bytecode has; None = all."""
    if isinstance(expr, KERNEL_LEAVES) and not (isinstance(expr, CgroupIs)
                                                 and expr.cgroup_id is None):
        return expr
    if isinstance(expr, And):
        left, right = _kernel_part(expr.left), _kernel_part(expr.right)
        if left is None or right is None:
            return left or right
        return And(left, right)
    if isinstance(expr, Or):
        left, right = _kernel_part(expr.left), _kernel_part(expr.right)
        return None if left is None or right is None else Or(left, right)
    if isinstance(expr, Not) and not _has(expr.inner, (StateIs, OwnerIs)):
        return expr
    return None


def _op(code: int, yes: int, no: int) -> bytes:
    return OP.pack(code, yes, no)


def _leaf(body_code: int, payload: bytes) -> bytes:
    size = OP.size + len(payload)
    return _op(body_code, size, size + 4) + payload


def _port_op(side: str, op: str, port: int) -> bytes:
    """A port comparison. ss's `=` is a host condition, whose port is an int
    (so 70000 matches no socket); `>=`/`<=` carry the port in the u16 `no`
    field, which keeps its low 16 bits, as ss's struct initialiser does."""
    s = side == "s"
    if op == "eq":
        if not 0 <= port <= 0xFFFF:
            return _leaf(BC_S_COND if s else BC_D_COND, HOSTCOND.pack(socket.AF_UNSPEC, 0, port))
        return _leaf(BC_S_EQ if s else BC_D_EQ, _op(0, 0, port))
    if op == "ge":
        return _leaf(BC_S_GE if s else BC_D_GE, _op(0, 0, port & 0xFFFF))
    if op == "le":
        return _leaf(BC_S_LE if s else BC_D_LE, _op(0, 0, port & 0xFFFF))
    inverse = {"ne": "eq", "gt": "le", "lt": "ge"}[op]
    return _negate(_port_op(side, inverse, port))


def _host_op(leaf: HostIs) -> bytes:
    port = -1 if leaf.port is None else leaf.port
    if leaf.network is None:
        cond = HOSTCOND.pack(socket.AF_UNSPEC, 0, port)
    else:
        family = socket.AF_INET if leaf.network.version == 4 else socket.AF_INET6
        cond = HOSTCOND.pack(family, leaf.network.prefixlen, port)
        cond += leaf.network.network_address.packed
    return _leaf(BC_S_COND if leaf.side == "s" else BC_D_COND, cond)


def _dev_op(leaf: DevIs) -> bytes:
    # inet_diag_bc_run: u32 ifindex after the op, compared with sk_bound_dev_if
    index = leaf.index if leaf.index is not None and leaf.index >= 0 else 0xFFFFFFFF
    return _leaf(BC_DEV_COND, struct.pack("=I", index))


def _auto_op(leaf: AutoBound) -> bytes:
    """ss's `autobound` in the kernel: no SOCK_BINDPORT_LOCK. Its other half (the
    port is ephemeral) is ss's userspace reading, which Filter.predicate()
    checks: as in ss, a socket is shown when both readings accept it, so
    `not autobound` is "port-locked and not ephemeral"."""
    return _op(BC_AUTO, 4, 8)


def _negate(block: bytes) -> bytes:
    # true lands on the JMP, which skips to L+8 (false); false lands on L+4 (true).
    return block + _op(BC_JMP, 4, 8)


def _relocate_false(block: bytes, reloc: int) -> bytes:
    """Move the jumps to `block`'s false exit by `reloc` bytes (ssfilter_patch)."""
    out = bytearray(block)
    pos, remaining = 0, len(block)
    while remaining > 0:
        code, yes, no = OP.unpack_from(out, pos)
        if no == remaining + 4:
            OP.pack_into(out, pos, code, yes, no + reloc)
        pos += yes
        remaining -= yes
    return bytes(out)


def _compile(expr: Expr) -> bytes:
    if isinstance(expr, PortCmp):
        return _port_op(expr.side, expr.op, expr.port)
    if isinstance(expr, HostIs):
        return _host_op(expr)
    if isinstance(expr, DevIs):
        return _dev_op(expr)
    if isinstance(expr, MarkIs):
        return _leaf(BC_MARK_COND, MARKCOND.pack(expr.mark, expr.mask))
    if isinstance(expr, CgroupIs):
        return _leaf(BC_CGROUP_COND, struct.pack("=Q", expr.cgroup_id or 0))
    if isinstance(expr, AutoBound):
        return _auto_op(expr)
    if isinstance(expr, And):
        left, right = _compile(expr.left), _compile(expr.right)
        return _relocate_false(left, len(right)) + right
    if isinstance(expr, Or):
        left, right = _compile(expr.left), _compile(expr.right)
        return left + _op(BC_JMP, 4, len(right) + 4) + right
    if isinstance(expr, Not):
        return _negate(_compile(expr.inner))
    raise TypeError(f"not a kernel filter word: {expr!r}")
