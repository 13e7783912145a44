"""Command line: `ollama-probe-exporter [flags]` serves; `ollama-probe-exporter probe` runs once.

Exit status: 0 on a clean stop, 2 for a bad configuration or bad flags, 1 when `probe` saw a
failed probe or check.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from prometheus_client import PLATFORM_COLLECTOR, PROCESS_COLLECTOR
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.config import CONFIG_ENV, Config, ConfigError, load_config
from exporter.exposition import Exposition
from exporter.gpu import DisabledGpuReader, GpuReader, NvmlReader
from exporter.gpu_collector import GpuCollector
from exporter.memory import tune_allocator
from exporter.report import format_json, format_table, run_round
from exporter.server import App, HttpServer
from exporter.service import Service
from exporter.status import render_status, snapshot_of
from exporter.webconfig import WebAccessConfig, load_web_config

log = logging.getLogger("exporter")
EXIT_CONFIG = 2
SHUTDOWN_GRACE_S = 1.5


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ollama-probe-exporter",
        description="Probe the models of Ollama servers and serve the results to Prometheus.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _common(parser)
    parser.add_argument(
        "--config.check",
        dest="config_check",
        action="store_true",
        help="validate the configuration and exit (0 valid, 2 invalid)",
    )
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        default=None,
        help="address to serve on (default from config, :10434)",
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        default=None,
        help="TLS and basic auth, in the Prometheus exporter-toolkit format",
    )
    sub = parser.add_subparsers(dest="command")
    probe = sub.add_parser("probe", help="probe every model once now and print a comparison")
    _common(probe)
    probe.add_argument("--output", choices=("table", "json"), default="table")
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config.file",
        dest="config_file",
        default=argparse.SUPPRESS,
        help=f"YAML configuration (default ${CONFIG_ENV}, else built-in defaults)",
    )
    parser.add_argument(
        "--log.level",
        dest="log_level",
        default=argparse.SUPPRESS,
        choices=("debug", "info", "warning", "error"),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", "info").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if log.getEffectiveLevel() > logging.DEBUG:
        # One line per HTTP request and per scheduled job drowns the lines that matter.
        for noisy in ("httpx", "apscheduler"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    path = getattr(args, "config_file", None) or os.environ.get(CONFIG_ENV) or None
    try:
        config = load_config(path)
        web_file = getattr(args, "web_config_file", None)
        web = load_web_config(web_file) if web_file else WebAccessConfig()
    except ConfigError as exc:
        print(f"ollama-probe-exporter: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "probe":
        return _probe_once(config, args.output)
    if args.config_check:
        print(f"configuration OK: {path or 'built-in defaults'}")
        return 0
    return _serve(config, path, args.listen_address or config.web.listen_address, web)


def _gpu_reader(config: Config) -> GpuReader:
    return DisabledGpuReader() if config.gpu.enabled is False else NvmlReader()


def _probe_once(config: Config, output: str) -> int:
    gpu = _gpu_reader(config)
    try:
        result = run_round(config, gpu)
    finally:
        gpu.close()
    print(format_json(result.results) if output == "json" else format_table(result.results))
    for name in result.unreachable:
        print(f"target {name}: models could not be listed", file=sys.stderr)
    return 0 if result.ok else 1


def _serve(config: Config, path: str | None, address: str, web: WebAccessConfig) -> int:
    tune_allocator()  # before the first render: the texts are megabytes at hundreds of jobs
    gpu = _gpu_reader(config)
    exposition = Exposition(live_collectors=_live_collectors(gpu))
    service = Service(config, path, exposition, gpu)
    app = App(
        metrics=exposition.body,
        ready=service.ready,
        reload=service.reload,
        status_page=lambda: render_status(snapshot_of(service)),
    )
    try:
        server = HttpServer(address, app, web).start()
    except (OSError, ValueError) as exc:
        print(f"ollama-probe-exporter: cannot listen on {address}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    service.start()
    log.info(
        "serving on %s (port %d), %d target(s), %d prompt(s)",
        address,
        server.port,
        len(config.targets),
        len(config.prompts),
    )
    _wait_for_signals(service)
    server.stop()
    service.stop()
    gpu.close()
    _exit_deadline()
    return 0


def _live_collectors(gpu: GpuReader) -> list[Collector]:
    return [PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GpuCollector(gpu)]


def _wait_for_signals(service: Service) -> None:
    """Block until SIGTERM/SIGINT; SIGHUP reloads the configuration."""
    events: queue.SimpleQueue[int] = queue.SimpleQueue()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        events.put(signum)

    for wanted in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(wanted, on_signal)
    while (received := events.get()) == signal.SIGHUP:
        service.reload()
    log.info("received %s, stopping", signal.Signals(received).name)


def _exit_deadline() -> None:
    """Probe threads are cancelled; if one is still stuck, do not let it hold the exit."""

    def force() -> None:
        logging.shutdown()
        os._exit(0)

    timer = threading.Timer(SHUTDOWN_GRACE_S, force)
    timer.daemon = True
    timer.start()
