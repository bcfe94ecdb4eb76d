"""watch: repeated samples of the kernel, and their history.

This package samples and keeps. What shows the samples and what serves them
stand apart, in two subpackages that build on the modules here and not on
each other; nothing here imports them (tests/unit/test_layers.py).

Sampling
    sampler.py         one Sample from the live kernel: sockets, owners, host facts, findings
    sample.py          what the watch, the history and the exporter keep of a snapshot (pure)
    hostfacts.py       conntrack, file-nr, TCP counters, fd limits (reads /proc)
    ages.py            CLOSE_WAIT ages that only grow: each socket dated at its first sighting
    process_labels.py  who a process is across restarts: comm, systemd unit, container, pod
    findings.py        the doctor on each sample, unless it is switched off
History
    history_db.py      SQLite history: one writer, many readers, retention
    window.py          the last samples in memory, for sparklines and growth fits
    trend.py           least-squares growth and time to a limit (pure)
Shown and served (subpackages)
    presentation/      the live view and the HTML report, with its charts
    serving/           the Prometheus exporter, its HTTP server, TLS and basic auth
"""
