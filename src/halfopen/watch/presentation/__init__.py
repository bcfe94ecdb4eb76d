"""Presentation: samples and history shown to a person, on a terminal or in a page.

    loop.py            the watch loop: sample, record, draw
    view.py            one rich frame of the live view
    html_report.py     the self-contained HTML report from a recorded history
    svg.py             inline SVG line charts and the findings' timeline
"""
