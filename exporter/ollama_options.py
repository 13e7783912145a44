"""The request options Ollama documents, in one place, and how a name outside them is judged.

Ollama logs and ignores an option it does not know, so a misspelt `temprature` would silently
probe at the server's default temperature. A name close to a documented one is therefore
treated as a typo; any other unknown name may belong to a newer Ollama and is sent as is.
"""

from __future__ import annotations

# Options a request may change per call; none of them reloads a resident model.
RUNTIME_OPTIONS = frozenset(
    {
        "num_keep",
        "seed",
        "num_predict",
        "top_k",
        "top_p",
        "min_p",
        "typical_p",
        "repeat_last_n",
        "temperature",
        "repeat_penalty",
        "presence_penalty",
        "frequency_penalty",
        "stop",
    }
)

# Options that Ollama applies when it starts a runner: a probe that sends a value different
# from the resident model's forces a reload.
LOAD_TIME_OPTIONS = frozenset(
    {"num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread", "draft_num_predict"}
)

KNOWN_OPTIONS = RUNTIME_OPTIONS | LOAD_TIME_OPTIONS


def typo_of(name: str) -> str | None:
    """The documented option `name` is most likely a misspelling of, or None.

    A name of up to five characters gets one edit, a longer one two: `temprature`, `num_predcit`
    and `stpo` are caught, while `mirostat` or `tfs_z` (options of other Ollama versions) pass.
    """
    if name in KNOWN_OPTIONS:
        return None
    allowed = 1 if len(name) <= 5 else 2
    scored = sorted((_edit_distance(name, known), known) for known in KNOWN_OPTIONS)
    distance, nearest = scored[0]
    return nearest if distance <= allowed else None


def _edit_distance(a: str, b: str) -> int:
    """Insertions, deletions, substitutions and swaps of neighbours, one each."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            cost = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, previous2[j - 2] + 1)
            current.append(cost)
        previous2, previous = previous, current
    return previous[-1]
