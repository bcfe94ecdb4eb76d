"""Serving: samples as Prometheus metrics, over HTTP (`halfopen exporter`).

    exporter.py        the Prometheus collector: fresh metric families per scrape
    trace_counts.py    `exporter --trace`: connection ends per process, counted from tracefs
    serve.py           the /metrics HTTP server (bounded, idle clients cut first)
    webconfig.py       --web.config.file: TLS and basic auth (exporter-toolkit format)
"""
