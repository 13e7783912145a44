"""Child process that serves OllamaDouble instances for the benchmarks (see common.DoubleHost).

    python -m benches.double_host '{"targets": [{"models": [...]}], "release_every": 0}'

Prints {"urls": [...]} on one line, then answers commands on stdin, one per line:
`dump PATH` (write every record as JSON, reply "ok"), `release` (free hanging requests),
`stop` (reply "bye" and exit).
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

from tests.fakes import ollama_double
from tests.fakes.ollama_double import Fault, ModelScript, OllamaDouble, RequestRecord


def _script(raw: dict[str, Any]) -> ModelScript:
    fields = dict(raw)
    if "fault" in fields:
        fields["fault"] = Fault(fields["fault"])
    return ModelScript(**fields)


def _without_capabilities() -> None:
    """Make /api/tags look like an Ollama older than the capabilities field.

    The exporter then has to ask /api/show per model, which is what the cost benchmark checks
    is cached rather than repeated.
    """
    original = ollama_double._Handler._tag

    def tag(self: Any, script: ModelScript) -> dict[str, Any]:
        entry: dict[str, Any] = original(self, script)
        entry.pop("capabilities", None)
        return entry

    ollama_double._Handler._tag = tag  # type: ignore[method-assign]


def _row(record: RequestRecord) -> list[Any]:
    body = record.body or {}
    text = ""
    if isinstance(body.get("messages"), list) and body["messages"]:
        text = str(body["messages"][0].get("content", ""))
    elif isinstance(body.get("prompt"), str):
        text = body["prompt"]
    head = len(f"{record.method} {record.path} HTTP/1.1\r\n") + 2  # + the blank line
    head += sum(len(k) + len(v) + 4 for k, v in record.headers.items())
    size = head + int(record.headers.get("content-length") or 0)
    model = str(body.get("model") or "")
    return [
        record.method,
        record.path,
        model,
        text,
        record.received_at,
        record.first_token_at,
        record.last_byte_at,
        record.status,
        size,
    ]


def _releaser(doubles: list[OllamaDouble], every: float, stop: threading.Event) -> None:
    # Hung requests block a double's handler thread until released; free them now and then.
    while not stop.wait(every):
        for double in doubles:
            double.release()


def main() -> int:
    spec = json.loads(sys.argv[1])
    if any(t.get("tags_without_capabilities") for t in spec["targets"]):
        _without_capabilities()
    doubles = [
        OllamaDouble(
            [_script(m) for m in target["models"]],
            huge_bytes=int(target.get("huge_bytes", 8 * 1024 * 1024)),
            trickle_interval=float(target.get("trickle_interval", 1.0)),
        ).start()
        for target in spec["targets"]
    ]
    stop = threading.Event()
    if spec.get("release_every"):
        args = (doubles, float(spec["release_every"]), stop)
        threading.Thread(target=_releaser, args=args, daemon=True).start()
    print(json.dumps({"urls": [d.url for d in doubles]}), flush=True)
    for line in sys.stdin:
        verb, _, arg = line.strip().partition(" ")
        if verb == "dump":
            with open(arg, "w", encoding="utf-8") as out:
                json.dump([[_row(r) for r in d.requests()] for d in doubles], out)
            print("ok", flush=True)
        elif verb == "release":
            for double in doubles:
                double.release()
            print("ok", flush=True)
        elif verb == "stop":
            break
        else:
            print(f"unknown command {verb!r}", flush=True)
    stop.set()
    for double in doubles:
        double.stop()
    print("bye", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
