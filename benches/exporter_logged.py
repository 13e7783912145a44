"""The exporter CLI, unchanged, with APScheduler's "Running job ... (scheduled at T)" lines kept.

`python -m benches.exporter_logged FLAGS` is `python -m exporter FLAGS` except that the
executors' INFO lines, which the CLI mutes below debug level, reach the log. They carry each
run's planned time (jitter included), which the scheduler benchmark needs as its external plan;
`--log.level debug` would also give them, at the price of a dozen httpcore lines per request.
"""

from __future__ import annotations

import logging
import sys

if __name__ == "__main__":
    from exporter.cli import main

    # A child logger with its own level outlives the CLI muting the "apscheduler" parent.
    logging.getLogger("apscheduler.executors").setLevel(logging.INFO)
    sys.exit(main())
