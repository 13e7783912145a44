"""Command line: `ollama-probe-exporter [flags]` serves; `probe` runs once; `compare` compares.

Exit status: 0 on a clean stop, 2 for a bad configuration or bad flags (and for `compare`
without its extra), 1 when `probe` or `compare` saw a failed probe or check.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import queue
import secrets
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from prometheus_client import PLATFORM_COLLECTOR, PROCESS_COLLECTOR
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.config import CONFIG_ENV, Config, load_config
from exporter.exposition.gpu_series import GpuCollector
from exporter.gpu import DisabledGpuReader, GpuReader, NvmlReader
from exporter.probe_command import format_json, format_table, run_round
from exporter.service import Service
from exporter.shard import with_flags
from exporter.target_files import with_file_targets
from exporter.validation import ConfigError
from exporter.web.access import WebAccessConfig, load_web_config
from exporter.web.server import App, HttpServer
from exporter.web.status import render_status, snapshot_of

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
    parser.add_argument(
        "--shard.count",
        dest="shard_count",
        type=_positive,
        default=None,
        help="replicas the targets are split across (default from config, 1)",
    )
    parser.add_argument(
        "--shard.index",
        dest="shard_index",
        type=_non_negative,
        default=None,
        help="this replica's shard, 0 to count - 1: it probes the targets whose name hashes "
        "to it (default from config, 0)",
    )
    sub = parser.add_subparsers(dest="command")
    probe = sub.add_parser("probe", help="probe every model once now and print a comparison")
    _common(probe)
    probe.add_argument("--output", choices=("table", "json"), default="table")
    _compare_parser(sub.add_parser("compare", help=COMPARE_HELP, description=COMPARE_HELP))
    return parser


COMPARE_HELP = (
    "probe the models in shuffled rounds (or read Prometheus) and write a comparison with "
    "confidence intervals and a verdict per pair"
)


def _compare_parser(compare: argparse.ArgumentParser) -> None:
    _common(compare)
    compare.add_argument("--rounds", type=_positive, default=10, help="rounds (default 10)")
    compare.add_argument(
        "--per-visit",
        type=_positive,
        default=3,
        help="probes of each prompt per visit to a model, back to back (default 3)",
    )
    compare.add_argument(
        "--prompt", action="append", default=[], metavar="ID", help="only this prompt (repeatable)"
    )
    compare.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="NAME",
        help="only this target (repeatable)",
    )
    compare.add_argument(
        "--seed", type=int, default=None, help="seed of the visit order and the bootstrap"
    )
    compare.add_argument("--output", choices=("markdown", "html", "json"), default="markdown")
    compare.add_argument("--out", default=None, metavar="FILE", help="write here, not to stdout")
    compare.add_argument(
        "--from-prometheus",
        default=None,
        metavar="URL",
        help="build the report from what this Prometheus holds instead of probing",
    )
    compare.add_argument(
        "--range", default="7d", help="with --from-prometheus: how far back (default 7d)"
    )


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, not {value}")
    return value


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
    # A comparison's failures are in its report; the runner's warnings would only interleave.
    quiet = "error" if args.command == "compare" else "info"
    _setup_logging(getattr(args, "log_level", quiet))
    path = getattr(args, "config_file", None) or os.environ.get(CONFIG_ENV) or None
    web_file = getattr(args, "web_config_file", None)
    loader = _shard_loader(args.shard_count, args.shard_index)
    loaded = _load(path, web_file, loader)
    if loaded is None:
        return EXIT_CONFIG
    config, web = loaded
    if args.command in ("probe", "compare"):
        config = with_file_targets(config, path)
    if args.command == "probe":
        return _probe_once(config, args.output)
    if args.command == "compare":
        return _compare(config, args)
    if args.config_check:
        print(f"configuration OK: {path or 'built-in defaults'}")
        if web_file:
            print(f"web configuration OK: {web_file}")
        return 0
    return _serve(config, path, args.listen_address or config.web.listen_address, web, loader)


class OneLineFormatter(logging.Formatter):
    """Writes every record as one line: line breaks in the message or traceback become \\n.

    A reload error lists its problems on several lines, and a traceback always does; split, the
    later lines would read as records without time or level to anyone who greps or ships logs.
    """

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\r")


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    if log.getEffectiveLevel() > logging.DEBUG:
        # One line per HTTP request and per scheduled job drowns the lines that matter.
        for noisy in ("httpx", "apscheduler"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


Loader = Callable[[str | Path | None], Config]


def _shard_loader(count: int | None, index: int | None) -> Loader:
    """load_config with the --shard.* flags over the file's `shard`, at start and at reloads."""

    def load(path: str | Path | None) -> Config:
        config = load_config(path)
        try:
            shard = with_flags(config.shard, count, index)
        except ValueError as exc:
            raise ConfigError("command line", [str(exc)]) from None
        return config.model_copy(update={"shard": shard})

    return load


def _load(
    path: str | None, web_file: str | None, loader: Loader = load_config
) -> tuple[Config, WebAccessConfig] | None:
    """Both files, or None after printing every problem of each (a fix needs one round)."""
    config: Config | None = None
    web: WebAccessConfig | None = WebAccessConfig()
    try:
        config = loader(path)
    except ConfigError as exc:
        print(f"ollama-probe-exporter: {exc}", file=sys.stderr)
    if web_file:
        try:
            web = load_web_config(web_file)
        except ConfigError as exc:
            print(f"ollama-probe-exporter: {exc}", file=sys.stderr)
            web = None
    return (config, web) if config is not None and web is not None else None


def _gpu_reader(config: Config) -> GpuReader:
    return DisabledGpuReader() if config.gpu.enabled is False else NvmlReader()


def _probe_once(config: Config, output: str) -> int:
    gpu = _one_shot_gpu_reader(config)
    try:
        result = run_round(config, gpu)
    finally:
        gpu.close()
    print(format_json(result) if output == "json" else format_table(result))
    return 0 if result.ok else 1


REPORT_EXTRA = ("numpy", "scipy", "matplotlib")


def _compare(config: Config, args: argparse.Namespace) -> int:
    try:  # the statistics and charts are an optional extra, kept out of the exporter's image
        for module in REPORT_EXTRA:
            importlib.import_module(module)
        from exporter.compare.command import Options, compare
    except ImportError as exc:
        print(
            f"ollama-probe-exporter compare needs the report extra ({exc.name or exc} is "
            "missing): pip install 'ollama-probe-exporter[report]'",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    seed = args.seed if args.seed is not None else secrets.randbelow(2**32)
    options = Options(
        rounds=args.rounds,
        per_visit=args.per_visit,
        prompts=tuple(args.prompt),
        targets=tuple(args.target),
        seed=seed,
        output=args.output,
        out=Path(args.out) if args.out else None,
        from_prometheus=args.from_prometheus,
        range=args.range,
    )
    try:
        return compare(config, options, _one_shot_gpu_reader)
    except KeyboardInterrupt:  # a long run stopped at the keyboard: a line, not a traceback
        print("\ncompare: interrupted, no report written", file=sys.stderr)
        return 130


def _one_shot_gpu_reader(config: Config) -> GpuReader:
    """NVML only when some probe of the round would sample it."""
    if config.gpu.enabled is False or not any(t.owns_local_gpu() for t in config.targets):
        return DisabledGpuReader()
    # Under `auto` a machine without NVML is normal, and a one-shot report has no nvml_up for
    # a warning to explain; asked for with `true`, its absence still warns.
    quiet = config.gpu.enabled == "auto"
    return NvmlReader(unavailable_level=logging.DEBUG if quiet else logging.WARNING)


def _serve(
    config: Config,
    path: str | None,
    address: str,
    web: WebAccessConfig,
    loader: Loader = load_config,
) -> int:
    gpu = _gpu_reader(config)
    service = Service(config, path, gpu, live_collectors=_live_collectors(gpu), loader=loader)
    app = App(
        metrics=service.exposition.body,
        waiting_for=service.waiting_for,
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
        len(service.targets),
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
