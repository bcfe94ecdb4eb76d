"""The lab: reproduce each failure in network namespaces, diagnose it, fix it.

    runner      one run: preflight, scenario, verdict, cleanup on every exit path
    topo        namespaces, veth links, sysctls, nft, lab servers; prints each command
    apps        the small misbehaving servers run inside the namespaces
    tools       halfopen's own doctor, fix, kill, keepalive (run as commands), ss, nstat
    scenario    Scenario: the phases in order (build, break_, diagnose, fix, verify),
                cleanup on every exit path, checks, the verdict; result record, client helpers
    scenarios/  one Scenario class per failure
    state       /run/halfopen-lab/state.json: what a run created, for `lab clean`
"""
