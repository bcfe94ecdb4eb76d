"""The one sysctl table (model.sysctls) against the records and the kernel."""

from __future__ import annotations

import dataclasses
import os

import pytest
from tests.helpers import sh

from halfopen.model.host import Tunables
from halfopen.model.sysctls import SYSCTLS


def test_every_tunables_field_has_a_row_and_back():
    fields = {f.name for f in dataclasses.fields(Tunables)} - {"raw"}
    assert fields == {s.field for s in SYSCTLS.values() if s.field}


def test_defaults_are_in_range_and_shaped():
    for s in SYSCTLS.values():
        if s.default is not None:
            words = s.default.split()
            assert len(words) == s.numbers, s.key
            if s.valid is not None:
                assert all(s.valid[0] <= int(w) <= s.valid[1] for w in words), s.key
        if s.default is not None:
            assert s.source, f"{s.key}: a default needs its source in the kernel"


@pytest.mark.netns
@pytest.mark.skipif(os.geteuid() != 0, reason="creates a network namespace")
def test_scope_is_the_kernels(netns):
    """A per-namespace key exists in a new namespace; a host-wide one only in the initial one."""
    for s in SYSCTLS.values():
        if s.field is None:
            continue  # conntrack keys exist only with the module loaded
        path = "/proc/sys/" + s.key.replace(".", "/")
        inside = sh("test", "-e", path, check=False, netns=netns).returncode == 0
        assert os.path.exists(path), s.key
        assert inside == s.per_netns, f"{s.key}: per_netns={s.per_netns}, present in a new netns: {inside}"
