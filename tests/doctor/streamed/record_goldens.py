"""Record the doctor's output for every input (run on the pre-streaming code, once).

    python3 tests/doctor/streamed/record_goldens.py
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import streamed_inputs as inputs  # noqa: E402

from halfopen.diagnose.perfdata import perfdata  # noqa: E402
from halfopen.diagnose.report import diagnose  # noqa: E402


def main() -> None:
    os.makedirs(inputs.GOLDENS, exist_ok=True)
    for name, snap, options, nginx in inputs.inputs():
        report = diagnose(snap, options, nginx=nginx)
        doc = {"report": report.to_dict(), "perfdata": [p.text() for p in perfdata(snap)]}
        with open(inputs.golden_path(name), "w") as f:
            json.dump(doc, f, sort_keys=True)
            f.write("\n")


if __name__ == "__main__":
    main()
