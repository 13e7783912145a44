"""Target: which models get probe jobs (inventory), health and residency, over its backend.

Mostly against the Ollama double over loopback; listings the double cannot produce (entries
without capabilities, odd bodies) come from a small httpx.MockTransport stand-in for Ollama.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.backends.ollama import model_key
from exporter.config import Config, parse_config
from exporter.exposition.scrape import Exposition
from exporter.probing.targets import Target
from tests.fakes.ollama_double import ModelScript, OllamaDouble

GEMMA = "gemma3:12b"


def default_models() -> list[ModelScript]:
    return [
        ModelScript(GEMMA, resident=True, size=8_000_000_000, size_vram=7_500_000_000),
        ModelScript("llama3.2", family="llama", parameter_size="3.2B", quantization_level="Q8_0"),
        ModelScript("nomic-embed-text", family="nomic-bert", capabilities=["embedding"]),
        ModelScript("gpt-oss:120b-cloud", family="gptoss", remote=True),
        ModelScript("mistral:7b", family="mistral"),
    ]


@pytest.fixture
def double() -> Iterator[OllamaDouble]:
    with OllamaDouble(default_models()) as d:
        yield d


def config(url: str, **top: Any) -> Config:
    target = {"name": "local", "url": url, **top.pop("target", {})}
    return parse_config({"targets": [target], **top}, "test.yaml", {})


class Setup:
    def __init__(self, cfg: Config, api_client: httpx.Client, probe_client: httpx.Client) -> None:
        self.config = cfg
        self.target = Target(cfg.targets[0], api_client, probe_client)
        self.exposition = Exposition(targets=lambda: [self.target], live_collectors=())

    def refresh(self) -> bool:
        return self.target.refresh_inventory(self.config, 5.0)

    def models(self) -> list[str]:
        inventory = self.target.inventory
        assert inventory is not None
        return sorted(inventory.models)

    def samples(self, name: str) -> dict[frozenset[tuple[str, str]], float]:
        text = self.exposition.render().decode()
        return {
            frozenset(s.labels.items()): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == name
        }

    def value(self, name: str, **labels: str) -> float | None:
        found = [v for k, v in self.samples(name).items() if labels.items() <= dict(k).items()]
        assert len(found) <= 1
        return found[0] if found else None

    def label_values(self, name: str, label: str) -> list[str]:
        return sorted(dict(k)[label] for k in self.samples(name))


def on_double(double: OllamaDouble, clients: Any, **top: Any) -> Setup:
    return Setup(config(double.url, **top), *clients)


# --- discovery ----------------------------------------------------------------------------


def test_discovery_skips_embedding_remote_and_excluded_models(
    double: OllamaDouble, clients: Any
) -> None:
    setup = on_double(double, clients, exclude_models=["Mistral*"])
    assert setup.refresh() is True
    # Labels are the listed names: an untagged model shows with ':latest'.
    assert setup.models() == [GEMMA, "llama3.2:latest"]
    info = setup.value("ollama_model_info", model="llama3.2:latest")
    assert info == 1
    assert setup.samples("ollama_model_info") == {
        frozenset(
            {
                "target": "local",
                "model": "llama3.2:latest",
                "family": "llama",
                "parameter_size": "3.2B",
                "quantization_level": "Q8_0",
                "digest": hashlib.sha256(b"llama3.2").hexdigest()[:12],
            }.items()
        ): 1.0,
        frozenset(
            {
                "target": "local",
                "model": GEMMA,
                "family": "gemma3",
                "parameter_size": "12.2B",
                "quantization_level": "Q4_K_M",
                "digest": hashlib.sha256(GEMMA.encode()).hexdigest()[:12],
            }.items()
        ): 1.0,
    }
    # The listing said what each model can do: no /api/show needed.
    assert double.requests("/api/show") == []


@pytest.mark.parametrize("name", ["deepseek-v3.1:671b-cloud", "glm-4.6:cloud"])
def test_cloud_tags_are_skipped_even_without_remote_fields(
    double: OllamaDouble, clients: Any, name: str
) -> None:
    double.set_models([ModelScript(GEMMA), ModelScript(name, remote=False)])
    setup = on_double(double, clients)
    setup.refresh()
    assert setup.models() == [GEMMA]


def test_exclude_globs_apply_to_discovered_names(double: OllamaDouble, clients: Any) -> None:
    setup = on_double(double, clients, exclude_models=["*:latest", "gemma3:*"])
    setup.refresh()
    assert setup.models() == ["mistral:7b"]


def test_max_models_caps_discovery_and_counts_the_rest(double: OllamaDouble, clients: Any) -> None:
    names = [f"model{i}:1b" for i in (4, 2, 5, 1, 3)]
    scripts = [ModelScript(n) for n in names]
    double.set_models([*scripts, ModelScript("embed", capabilities=["embedding"])])
    setup = on_double(double, clients, target={"max_models": 2})
    setup.refresh()
    assert setup.models() == ["model1:1b", "model2:1b"]  # a stable choice: sorted by name
    inventory = setup.target.inventory
    assert inventory is not None and inventory.dropped == 3  # the embedding model is not "dropped"
    assert setup.value("ollama_exporter_models_dropped", target="local") == 3
    assert setup.label_values("ollama_model_info", "model") == ["model1:1b", "model2:1b"]


def test_nothing_is_dropped_under_the_cap(double: OllamaDouble, clients: Any) -> None:
    setup = on_double(double, clients)
    setup.refresh()
    assert setup.value("ollama_exporter_models_dropped", target="local") == 0


# --- configured models --------------------------------------------------------------------


def test_configured_names_match_listing_and_keep_their_spelling(
    double: OllamaDouble, clients: Any
) -> None:
    setup = on_double(double, clients, models=["LLAMA3.2", "Gemma3:12B"])
    setup.refresh()
    assert setup.models() == ["Gemma3:12B", "LLAMA3.2"]
    inventory = setup.target.inventory
    assert inventory is not None
    assert inventory.models["LLAMA3.2"].family == "llama"  # the listing's details
    assert setup.value("ollama_model_info", model="LLAMA3.2", family="llama") == 1


def test_configured_but_unlisted_model_still_gets_a_job_label(
    double: OllamaDouble, clients: Any
) -> None:
    # A deleted model must show up as model_not_found failures, not as silence.
    setup = on_double(double, clients, models=[GEMMA, "ghost:7b"])
    setup.refresh()
    assert setup.models() == [GEMMA, "ghost:7b"]
    assert setup.value("ollama_model_info", model="ghost:7b") == 1


def test_configured_models_still_honour_exclude(double: OllamaDouble, clients: Any) -> None:
    setup = on_double(double, clients, models=[GEMMA, "mistral:7b"], exclude_models=["mistral*"])
    setup.refresh()
    assert setup.models() == [GEMMA]


def test_configured_models_stay_when_the_listing_drops_them(
    double: OllamaDouble, clients: Any
) -> None:
    setup = on_double(double, clients, models=["llama3.2"])
    setup.refresh()
    double.set_models([ModelScript(GEMMA)])  # llama3.2 deleted on the server
    setup.refresh()
    assert setup.models() == ["llama3.2"]


# --- keeping the last good inventory ------------------------------------------------------


def test_failed_listing_keeps_the_last_inventory(double: OllamaDouble, clients: Any) -> None:
    setup = on_double(double, clients)
    setup.refresh()
    before = setup.target.inventory
    info_before = setup.samples("ollama_model_info")
    double.fail_endpoint("/api/tags", 500)
    assert setup.refresh() is False  # the listing failed; what is probed stays
    assert setup.target.inventory is before
    assert setup.samples("ollama_model_info") == info_before


def test_unreachable_target_keeps_the_last_inventory(double: OllamaDouble, clients: Any) -> None:
    setup = on_double(double, clients)
    setup.refresh()
    before = setup.target.inventory
    double.stop()  # Ollama restarting
    assert setup.refresh() is False
    assert setup.target.inventory is before


def test_empty_listing_keeps_the_last_inventory(double: OllamaDouble, clients: Any) -> None:
    setup = on_double(double, clients)
    setup.refresh()
    before = setup.target.inventory
    double.set_models([])  # an Ollama that came back before its models were scanned
    assert setup.refresh() is True
    assert setup.target.inventory is before
    assert setup.label_values("ollama_model_info", "model") == [
        GEMMA,
        "llama3.2:latest",
        "mistral:7b",
    ]


def test_first_listing_failing_leaves_the_inventory_unknown(
    double: OllamaDouble, clients: Any
) -> None:
    double.fail_endpoint("/api/tags", 503)
    setup = on_double(double, clients)
    assert setup.refresh() is False
    assert setup.target.inventory is None
    double.fail_endpoint("/api/tags", None)
    assert setup.refresh() is True
    assert setup.models() == [GEMMA, "llama3.2:latest", "mistral:7b"]


def test_first_listing_empty_is_a_known_empty_inventory(double: OllamaDouble, clients: Any) -> None:
    double.set_models([])
    setup = on_double(double, clients)
    assert setup.refresh() is True
    assert setup.models() == []


def test_a_new_listing_replaces_the_inventory(double: OllamaDouble, clients: Any) -> None:
    setup = on_double(double, clients)
    setup.refresh()
    double.set_models([ModelScript(GEMMA), ModelScript("qwen3:8b", family="qwen3")])
    setup.refresh()
    assert setup.models() == [GEMMA, "qwen3:8b"]
    assert setup.label_values("ollama_model_info", "model") == [GEMMA, "qwen3:8b"]


# --- /api/show when the listing lacks capabilities ----------------------------------------


class ListingWithoutCapabilities:
    """An older Ollama: /api/tags has no capabilities, /api/show has them."""

    def __init__(self, capabilities: dict[str, list[str] | int]) -> None:
        self.capabilities = capabilities  # an int answers /api/show with that status
        self.shown: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/tags":
            models = [
                {"name": name, "model": name, "details": {"family": "f"}}
                for name in self.capabilities
            ]
            return httpx.Response(200, json={"models": models})
        if request.url.path == "/api/show":
            name = json.loads(request.content)["model"]
            self.shown.append(name)
            caps = self.capabilities[name]
            if isinstance(caps, int):
                return httpx.Response(caps, json={"error": "boom"})
            return httpx.Response(200, json={"model_info": None, "capabilities": caps})
        return httpx.Response(404, text="404 page not found")


def mock_setup(handler: Any, **top: Any) -> Setup:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return Setup(config("http://ollama.test:11434", **top), client, client)


def test_show_is_consulted_once_per_new_model() -> None:
    fake = ListingWithoutCapabilities(
        {"a:1b": ["completion"], "embed:latest": ["embedding"], "b:1b": ["completion", "tools"]}
    )
    setup = mock_setup(fake)
    setup.refresh()
    assert setup.models() == ["a:1b", "b:1b"]
    assert sorted(fake.shown) == ["a:1b", "b:1b", "embed:latest"]
    setup.refresh()
    setup.refresh()
    assert len(fake.shown) == 3  # known models are not asked again
    fake.capabilities["c:1b"] = ["completion"]
    setup.refresh()
    assert fake.shown[3:] == ["c:1b"]
    assert setup.models() == ["a:1b", "b:1b", "c:1b"]


def test_show_failing_assumes_the_model_generates() -> None:
    fake = ListingWithoutCapabilities({"a:1b": 500, "b:1b": ["completion"]})
    setup = mock_setup(fake)
    setup.refresh()
    assert setup.models() == ["a:1b", "b:1b"]


def test_show_is_not_asked_for_excluded_or_remote_models() -> None:
    fake = ListingWithoutCapabilities({"a:1b": ["completion"], "big:cloud": ["completion"]})
    setup = mock_setup(fake, exclude_models=["a*"])
    setup.refresh()
    assert setup.models() == []
    assert fake.shown == []


# --- health -------------------------------------------------------------------------------


def test_health_up_counts_checks_and_exports_the_version(
    double: OllamaDouble, clients: Any
) -> None:
    setup = on_double(double, clients)
    setup.target.check_health(5.0)
    assert setup.value("ollama_up", target="local") == 1
    assert setup.samples("ollama_build_info") == {
        frozenset({"target": "local", "version": "0.32.15"}.items()): 1.0
    }
    assert setup.value("ollama_health_checks_total", target="local") == 1
    assert setup.value("ollama_health_check_failures_total", target="local") == 0


def test_health_down_on_a_bad_status_and_when_unreachable(
    double: OllamaDouble, clients: Any
) -> None:
    setup = on_double(double, clients)
    setup.target.check_health(5.0)
    double.fail_endpoint("/api/version", 500)
    setup.target.check_health(5.0)
    assert setup.value("ollama_up", target="local") == 0
    assert setup.value("ollama_health_checks_total", target="local") == 2
    assert setup.value("ollama_health_check_failures_total", target="local") == 1
    double.stop()
    setup.target.check_health(5.0)
    assert setup.value("ollama_up", target="local") == 0
    assert setup.value("ollama_health_checks_total", target="local") == 3
    assert setup.value("ollama_health_check_failures_total", target="local") == 2


def test_health_recovers_and_shows_only_the_current_version(
    double: OllamaDouble, clients: Any
) -> None:
    setup = on_double(double, clients)
    setup.target.check_health(5.0)
    double.stop()
    setup.target.check_health(5.0)
    double.version = "0.33.0"  # upgraded during the restart
    double.start()
    setup.target.check_health(5.0)
    assert setup.value("ollama_up", target="local") == 1
    assert setup.label_values("ollama_build_info", "version") == ["0.33.0"]


def test_ps_failing_is_not_counted_as_unavailability(double: OllamaDouble, clients: Any) -> None:
    setup = on_double(double, clients)
    double.fail_endpoint("/api/ps", 500)
    setup.target.check_health(5.0)
    assert setup.value("ollama_up", target="local") == 1
    assert setup.value("ollama_health_check_failures_total", target="local") == 0


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(200, json={}),
        httpx.Response(200, json={"version": ""}),
        httpx.Response(200, json=["0.32.15"]),
        httpx.Response(200, text="Ollama is running"),
        httpx.Response(200, content=b"[" * 10_000),  # hostile nesting
    ],
    ids=["no-version", "empty-version", "array", "text", "deep-nesting"],
)
def test_health_down_when_version_answer_is_unusable(reply: httpx.Response) -> None:
    setup = mock_setup(lambda _: reply)
    setup.target.check_health(5.0)
    assert setup.value("ollama_up", target="local") == 0
    assert setup.value("ollama_health_check_failures_total", target="local") == 1


def test_deeply_nested_listing_keeps_the_last_inventory() -> None:
    replies = iter(
        [
            httpx.Response(
                200, json={"models": [{"name": "a:1b", "capabilities": ["completion"]}]}
            ),
            httpx.Response(200, content=b'{"models":' + b"[" * 10_000),
        ]
    )
    setup = mock_setup(lambda _: next(replies))
    setup.refresh()
    assert setup.refresh() is False  # an unreadable listing is a failed one
    assert setup.models() == ["a:1b"]


# --- residency ----------------------------------------------------------------------------


def test_residency_series_for_known_and_resident_models(double: OllamaDouble, clients: Any) -> None:
    setup = on_double(double, clients)
    setup.refresh()
    setup.target.check_health(5.0)
    assert setup.value("ollama_model_loaded", model=GEMMA) == 1
    assert setup.value("ollama_model_loaded", model="llama3.2:latest") == 0
    assert setup.value("ollama_model_loaded", model="mistral:7b") == 0
    # Memory figures exist for resident models only.
    assert setup.label_values("ollama_model_vram_bytes", "model") == [GEMMA]
    assert setup.value("ollama_model_vram_bytes", model=GEMMA) == 7_500_000_000
    assert setup.label_values("ollama_model_memory_bytes", "model") == [GEMMA]
    assert setup.value("ollama_model_memory_bytes", model=GEMMA) == 8_000_000_000


def test_residency_follows_loads_and_unloads(double: OllamaDouble, clients: Any) -> None:
    setup = on_double(double, clients)
    setup.refresh()
    setup.target.check_health(5.0)
    double.set_resident(GEMMA, False)
    double.set_resident("llama3.2", True)
    setup.target.check_health(5.0)
    assert setup.value("ollama_model_loaded", model=GEMMA) == 0
    assert setup.value("ollama_model_loaded", model="llama3.2:latest") == 1
    assert setup.label_values("ollama_model_vram_bytes", "model") == ["llama3.2:latest"]


def test_residency_uses_the_configured_label(double: OllamaDouble, clients: Any) -> None:
    setup = on_double(double, clients, models=["GEMMA3:12B", "llama3.2"])
    setup.refresh()
    setup.target.check_health(5.0)
    assert setup.value("ollama_model_loaded", model="GEMMA3:12B") == 1
    assert setup.value("ollama_model_loaded", model="llama3.2") == 0
    assert setup.label_values("ollama_model_vram_bytes", "model") == ["GEMMA3:12B"]


def test_resident_look_up_is_keyed_like_ollama(double: OllamaDouble, clients: Any) -> None:
    setup = on_double(double, clients)
    resident = setup.target.resident(5.0)
    assert resident is not None and set(resident) == {GEMMA}
    assert resident[model_key("Gemma3:12B")].vram_bytes == 7_500_000_000
    double.fail_endpoint("/api/ps", 500)
    assert setup.target.resident(5.0) is None
