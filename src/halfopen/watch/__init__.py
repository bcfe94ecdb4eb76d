"""watch: repeated snapshots turned into trends, history, reports and metrics.

    sample.py    one Sample from a Snapshot and host facts (pure)
    hostfacts.py conntrack, file-nr, TCP counters, fd limits (reads /proc)
    trend.py     least-squares growth and time to a limit (pure)
    window.py    the last N samples kept in memory for the live view
    history.py   SQLite history: one writer, many readers, retention
    findings.py  the doctor, when it is installed
    view.py      one rich frame of the live view
    exporter.py  the Prometheus collector
    svg.py       inline SVG line charts
    report.py    the self-contained HTML report
"""
