"""Every doctor input the golden tests run: the recorded cases, and generated tables."""

from __future__ import annotations

import glob
import json
import os

import streamed_gen as gen

from halfopen.diagnose import middlebox
from halfopen.diagnose.context import Options
from halfopen.model.nginx import NginxConf
from halfopen.model.snapshot import Snapshot

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = sorted(glob.glob(os.path.join(HERE, "..", "cases", "*.json")))
GOLDENS = os.path.join(HERE, "goldens")
# generated tables over the host facts of these cases (rules that need facts run)
BASES = ("tcp-memory-pressure", "orphan-pressure-fin-wait2", "no-host-facts-unknown",
         "timeout-mismatch-gcp-nginx", "netns-scope-per-process")
GENERATED = [(base, seed, count, min_age) for base in BASES for seed, count in ((1, 400), (2, 3000))
             for min_age in (None, 0.0)]


def _case(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def _options(opts: dict) -> Options:
    return Options(pid=opts.get("pid"), port=opts.get("port"),
                   middleboxes=tuple(middlebox.parse(m) for m in opts.get("middleboxes", [])),
                   min_age_s=opts.get("min_age_s"))


def inputs():
    """(name, snapshot, options, nginx) for every input."""
    for path in CASES:
        case = _case(path)
        nginx = NginxConf.from_dict(case["nginx"]) if case.get("nginx") else None
        yield (os.path.basename(path)[:-5], Snapshot.from_dict(case["snapshot"]),
               _options(case.get("options") or {}), nginx)
    for base, seed, count, min_age in GENERATED:
        case = _case(os.path.join(HERE, "..", "cases", base + ".json"))
        nginx = NginxConf.from_dict(case["nginx"]) if case.get("nginx") else None
        opts = dict(case.get("options") or {})
        opts["min_age_s"] = min_age
        snap = gen.snapshot(seed, count, Snapshot.from_dict(case["snapshot"]))
        yield (f"gen-{base}-{seed}-{count}-{min_age}", snap, _options(opts), nginx)


def golden_path(name: str) -> str:
    return os.path.join(GOLDENS, name + ".json")
