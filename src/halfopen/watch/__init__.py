"""watch: repeated samples turned into trends, history, reports and metrics.

Sampling
    sampler.py         one Sample from the live kernel: sockets, owners, host facts, findings
    sample.py          what the watch, the history and the exporter keep of a snapshot (pure)
    hostfacts.py       conntrack, file-nr, TCP counters, fd limits (reads /proc)
    ages.py            CLOSE_WAIT ages that only grow: each socket dated at its first sighting
    process_labels.py  who a process is across restarts: comm, systemd unit, container, pod
    findings.py        the doctor on each sample, unless it is switched off
Storage
    history_db.py      SQLite history: one writer, many readers, retention
    window.py          the last samples in memory, for sparklines and growth fits
    trend.py           least-squares growth and time to a limit (pure)
Presentation
    loop.py            the watch loop: sample, record, draw
    view.py            one rich frame of the live view
    html_report.py     the self-contained HTML report
    svg.py             inline SVG line charts
    duration.py        durations on the command line ('90s', '15m', '7d')
Serving
    exporter.py        the Prometheus collector
    serve.py           the /metrics HTTP server (bounded, idle clients cut first)
    webconfig.py       --web.config.file: TLS and basic auth (exporter-toolkit format)
"""
