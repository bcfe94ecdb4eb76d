"""Every command's options, generated from the commands' own click parameters.

An option added later is fuzzed without a change here. Nothing is applied:
no --apply, --rollback or --yes, no `lab run` of a real scenario, no
`lab clean`. Commands whose valid run reads the live kernel (sockets, kill,
keepalive, watch, exporter) always get one value from a pool every such
option refuses ("poison"), so each run stays in-process and fast; their live
runs are fuzzed in a sandbox by test_fuzz_live.py.
"""

from __future__ import annotations

import importlib

import click
import inputs
import pytest
import values as v
from harness import FUZZ, TARGET_TIMEOUT_S, check
from hypothesis import given
from hypothesis import strategies as st

from halfopen.cli import options as opts
from halfopen.cli.main import COMMANDS
from halfopen.lab import scenarios

pytestmark = pytest.mark.timeout(TARGET_TIMEOUT_S)

SCENARIOS = frozenset(scenarios.SCENARIOS) | {"clean"}  # never run, never cleaned

NEVER = {"--apply", "--rollback", "--yes"}  # nothing is changed by the fuzz
LIVE = {"sockets", "kill", "keepalive", "watch", "exporter"}
FILTER_WORDS = ["state", "close-wait", "established", "listening", "exclude", "sport", "dport",
                "=", ">=", "<", ":22", ":1024", "src", "dst", "127.0.0.1", "10.0.0.0/8", "and",
                "or", "not", "(", ")", "pid", "1", "comm", "sshd", "uid", "0", "bogus", "all"]


@pytest.fixture(scope="module")
def pools(work):
    return inputs.build(work / "inputs")


_strategies: dict = {}


def cached(key: tuple, make) -> st.SearchStrategy:
    """Strategies built once: building one per draw (st.characters' tables) costs ms."""
    if key not in _strategies:
        _strategies[key] = make()
    return _strategies[key]


def command(name: str) -> click.Command:
    return _COMMANDS[name]


# Imported here, not while hypothesis draws (imports may use `random`).
_COMMANDS = {name: getattr(importlib.import_module(module), attr)
             for name, (module, attr, _help) in COMMANDS.items()}


def _path_role(opt: str) -> str:
    return {"--snapshot": "snapshot", "--findings": "findings", "--history": "history",
            "--middlebox-file": "middlebox", "--web.config.file": "webconfig",
            "db_path": "history"}.get(opt, "output")


def value_for(cmd: str, param: click.Parameter, pools: dict) -> tuple[st.SearchStrategy, list]:
    """(values, poison) for one option: poison values it must refuse before any live read."""
    name = param.opts[0]
    kind = param.type
    if isinstance(kind, opts.Integer):
        return v.ints(), v.BAD_INTS
    if isinstance(kind, opts.Seconds):
        return v.numbers(), v.BAD_NUMBERS
    if isinstance(kind, opts.FilePath):
        role = _path_role(name)
        if role == "output":  # written: only under the scratch directory, never a text's name
            return st.sampled_from(pools[role] + v.BAD_PATHS), v.BAD_PATHS
        return st.one_of(st.sampled_from(pools[role]), st.sampled_from(v.BAD_PATHS),
                         v.text().map(lambda t: pools["missing"] + t)), v.BAD_PATHS
    if isinstance(kind, click.Choice):
        return st.one_of(st.sampled_from(list(kind.choices)), v.text()), ["bogus", ""]
    if name == "--netns":
        return st.one_of(st.sampled_from(v.BAD_NETNS + ["hoF-none"]), v.text()), v.BAD_NETNS
    if name == "--listen":
        return st.one_of(st.sampled_from(v.BAD_LISTEN), v.text()), v.BAD_LISTEN
    if name in ("--interval", "--retention", "--window"):  # watch: durations
        return v.durations(), v.BAD_NUMBERS
    if name == "--middlebox":
        return st.one_of(st.sampled_from(["aws-nlb", "gcp-lb", "300", "0", "²", "-5", "9" * 40]),
                         v.text()), ["²", "0", "-5", "bogus"]
    if name in ("--nginx-config",):
        return st.one_of(st.sampled_from(pools["snapshot"]), st.sampled_from(v.BAD_PATHS)), \
            v.BAD_PATHS
    return v.text(), []


@st.composite
def argv_for(draw, cmd: str, pools: dict) -> list[str]:
    params = [p for p in command(cmd).params if p.opts[0] not in NEVER]
    options = [p for p in params if isinstance(p, click.Option)]
    argv: list[str] = [cmd]
    chosen = draw(cached((cmd, "options"), lambda: st.lists(
        st.sampled_from(options), max_size=5, unique_by=lambda p: p.name))) if options else []
    poisonable = [p for p in options
                  if cached((cmd, p.opts[0]), lambda p=p: value_for(cmd, p, pools))[1]]
    poison = draw(cached((cmd, "poison"), lambda: st.sampled_from(poisonable))) \
        if cmd in LIVE else None
    if poison is not None and poison not in chosen:
        chosen.insert(draw(st.integers(0, len(chosen))), poison)
    if cmd == "watch":
        argv.append("--once")  # should a poison value pass, one sample, not a live view
    if cmd == "doctor" and not any(p.opts[0] == "--snapshot" for p in chosen):
        argv += ["--snapshot", draw(cached(("snapshot",), lambda: st.sampled_from(
            pools["snapshot"])))]  # never the live doctor
    if cmd == "fix" and not any(p.opts[0] == "--findings" for p in chosen):
        argv += ["--findings", draw(cached(("findings",), lambda: st.sampled_from(
            pools["findings"])))]
    for p in chosen:
        flag = p.opts[0]
        if p.is_flag:
            argv.append(flag)
            continue
        good, bad = cached((cmd, flag), lambda p=p: value_for(cmd, p, pools))
        value = draw(cached((cmd, flag, "bad"), lambda bad=bad: st.sampled_from(bad))) \
            if p is poison else draw(good)
        argv += [f"{flag}={value}"] if draw(st.booleans()) else [flag, value]
    if cmd == "trace":
        argv += ["--duration", "0.2"]  # last, so it wins: a trace that passes parsing ends
    for p in params:
        if isinstance(p, click.Argument):
            if cmd == "report":
                argv.insert(1, draw(cached(("history",), lambda: st.sampled_from(
                    pools["history"]))))
            elif p.name == "filter_words":
                argv += draw(cached(("filter",), lambda: st.lists(
                    st.sampled_from(FILTER_WORDS), max_size=6)))
            else:
                argv += draw(cached(("texts",), lambda: st.lists(v.text(), max_size=3)))
    if draw(st.integers(0, 30)) == 0:
        argv.append(draw(st.sampled_from(["--bogus", "-h", "--help", "--", "-"])))
    return argv


LAB = st.one_of(
    st.just(["list"]), st.just(["list", "--json"]),
    st.tuples(st.just("run"), v.text().filter(lambda s: s not in SCENARIOS)).map(list),
    st.lists(v.text().filter(lambda s: s not in SCENARIOS), max_size=3))


@st.composite
def any_argv(draw, pools: dict) -> list[str]:
    cmd = draw(st.sampled_from([c for c in COMMANDS if c != "lab"] + ["lab"] * 2))
    if cmd == "lab":
        return ["lab", *draw(LAB)]
    argv = draw(cached((cmd, "argv"), lambda: argv_for(cmd, pools)))
    if draw(st.integers(0, 50)) == 0:
        argv.insert(0, "--debug")  # must not change anything without an internal error
    return argv


def test_fuzz_every_command_option(pools):
    @FUZZ
    @given(any_argv(pools))
    def one(argv: list[str]) -> None:
        check(argv)

    one()
