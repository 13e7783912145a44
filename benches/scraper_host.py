"""A scraper in its own process, as Prometheus is: times GET /metrics from outside the exporter.

    python -m benches.scraper_host PORT

Answers commands on stdin, one per line: `scrape N plain|gzip` (N scrapes on one keep-alive
connection, reply: the N latencies in seconds as a JSON list), `stop` (reply "bye" and exit).
A scraper in the exporter's own process would share its GIL with the code under test.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time

from benches.common import PYTHON, REPO


class Scraper:
    """A keep-alive HTTP client, like Prometheus: one connection, many scrapes."""

    def __init__(self, port: int) -> None:
        self._conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def scrape(self, gzipped: bool) -> bytes:
        headers = {"Accept-Encoding": "gzip"} if gzipped else {}
        self._conn.request("GET", "/metrics", headers=headers)
        response = self._conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"/metrics answered {response.status}")
        return body

    def close(self) -> None:
        self._conn.close()


def _timed_scrape(scraper: Scraper, gzipped: bool) -> float:
    start = time.perf_counter()
    scraper.scrape(gzipped)
    return time.perf_counter() - start


def main(port: int) -> None:
    scraper = Scraper(port)
    for line in sys.stdin:
        verb, *args = line.split()
        if verb == "stop":
            break
        count, kind = int(args[0]), args[1]
        times = [_timed_scrape(scraper, kind == "gzip") for _ in range(count)]
        print(json.dumps(times), flush=True)
    scraper.close()
    print("bye", flush=True)


class ScraperHost:
    """The parent's side: start the scraper process, ask for timed scrapes, stop it."""

    def __init__(self, port: int) -> None:
        self._proc = subprocess.Popen(
            [PYTHON, "-m", "benches.scraper_host", str(port)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def scrape(self, count: int, gzipped: bool = False) -> list[float]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(f"scrape {count} {'gzip' if gzipped else 'plain'}\n")
        self._proc.stdin.flush()
        reply = self._proc.stdout.readline()
        if not reply:
            raise RuntimeError("the scraper process ended")
        times: list[float] = json.loads(reply)
        return times

    def __enter__(self) -> ScraperHost:
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write("stop\n")
            self._proc.stdin.flush()
            self._proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self._proc.kill()
            self._proc.wait()


if __name__ == "__main__":
    main(int(sys.argv[1]))
