"""The exporter CLI with the prototypes of benches/proposals.py patched in (the "after").

    python -m benches.exporter_proposed FLAGS    # same flags as python -m exporter

With BENCHES_SCHEDULE_LOG=1 it also keeps APScheduler's "Running job" lines, as
benches.exporter_logged does for the shipped CLI (the scheduler benchmark reads them).
"""

from __future__ import annotations

import logging
import os
import sys

from benches.proposals import apply_all

if __name__ == "__main__":
    apply_all()
    from exporter.cli import main

    if os.environ.get("BENCHES_SCHEDULE_LOG") == "1":
        logging.getLogger("apscheduler.executors").setLevel(logging.INFO)
    sys.exit(main())
