"""Shell completion values: filter words, state names, rule ids, scenario names,
perfdata labels, middlebox presets.

click calls these with the words typed so far (`_HALFOPEN_COMPLETE=bash_complete`,
see docs/filter.md for the shell set-up); each returns the candidates that start
with the incomplete word. They import what they list only when called, so a
normal run pays nothing for them.
"""

from __future__ import annotations

from typing import Any

import click


def _starting(candidates: list[str], incomplete: str) -> list[str]:
    low = incomplete.lower()
    return [c for c in dict.fromkeys(candidates) if c.lower().startswith(low)]


def filter_words(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
    """After `state`/`exclude`: the state names and groups; after a word that takes a
    value (sport, pid, ...): nothing to offer; else the filter's words.

    >>> filter_words(click.Context(click.Command("x")), None, "clo")
    []
    """
    from ..model import filter as filters  # noqa: PLC0415 - only completion pays
    from ..model.states import STATE_WORD_NAMES  # noqa: PLC0415

    typed: Any = ctx.params.get("filter_words") or ()
    previous = typed[-1].lower() if typed else ""
    if previous in filters.STATE_RUN_WORDS:
        return _starting(list(STATE_WORD_NAMES), incomplete)
    if previous in filters.WORDS and previous not in ("autobound",) or previous in filters.OPERATORS:
        return []  # a value comes next: a port, an address, a pid, a name
    return _starting([*filters.WORDS, "and", "or", "not"], incomplete)


def rule_ids(_ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
    from ..diagnose.registry import RULE_IDS  # noqa: PLC0415 - only completion pays

    return _starting(list(RULE_IDS), incomplete)


def scenario_names(_ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
    from ..lab.scenarios import SCENARIOS  # noqa: PLC0415 - only completion pays

    return _starting(list(SCENARIOS), incomplete)


def perf_labels(_ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
    """-w/-c: `LABEL=` for each perfdata figure (the range is the operator's)."""
    from ..diagnose.perfdata import LABELS  # noqa: PLC0415 - only completion pays

    return _starting([f"{label}=" for label in LABELS], incomplete)


def middlebox_presets(_ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
    from ..diagnose.middlebox import PRESETS  # noqa: PLC0415 - only completion pays

    return _starting(list(PRESETS), incomplete)
