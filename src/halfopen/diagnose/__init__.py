"""Pure rules: a Snapshot (and optional history) in, Findings out. No I/O here.

    registry.RULES   every rule id of docs/design.md with its check function
    context.Context  what a rule reads (snapshot, options, history, nginx facts)
    report           the doctor's report: run the rules, order, status, JSON shape
"""
