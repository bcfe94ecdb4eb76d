"""TCP sysctls from /proc/sys: the values the doctor compares with defaults."""

from __future__ import annotations

from ...model.host import TUNABLE_FIELDS, Tunables
from ._text import bad, read, to_int


def sysctl_path(sys_root: str, name: str) -> str:
    """ "net.ipv4.tcp_mem" -> "/proc/sys/net/ipv4/tcp_mem" (sys_root "/proc/sys")."""
    return f"{sys_root}/{name.replace('.', '/')}"


def parse_tunables(raw: dict[str, str]) -> Tunables:
    """Typed Tunables from {sysctl name: text as read}.

    >>> t = parse_tunables({"net.ipv4.tcp_mem": "1\\t2\\t3\\n", "net.core.somaxconn": "4096\\n"})
    >>> t.tcp_mem, t.somaxconn, t.raw["net.ipv4.tcp_mem"]
    ((1, 2, 3), 4096, '1 2 3')
    """
    values: dict[str, object] = {}
    norm: dict[str, str] = {}
    for name, text in raw.items():
        words = text.split()
        norm[name] = " ".join(words)
        spec = TUNABLE_FIELDS.get(name)
        if spec is None:
            continue
        field_name, shape = spec
        want = 1 if shape == "int" else shape
        if len(words) != want:
            raise bad(name, 1, text, f"want {want} integer(s)")
        ints = [to_int(name, 1, text, w) for w in words]
        values[field_name] = ints[0] if shape == "int" else tuple(ints)
    return Tunables(**values, raw=norm)  # type: ignore[arg-type]


def read_tunables(sys_root: str = "/proc/sys", names=tuple(TUNABLE_FIELDS)) -> Tunables:
    """Read each sysctl that exists; absent ones stay None (e.g. tcp_mem outside init_net)."""
    raw = {}
    for name in names:
        try:
            raw[name] = read(sysctl_path(sys_root, name))
        except FileNotFoundError:
            continue
    return parse_tunables(raw)
