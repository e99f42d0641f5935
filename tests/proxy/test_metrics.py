"""``/metrics`` content (docs/contract.md §6): names, labels and values, parsed as Prometheus does."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxy_app.metrics import Metrics
from proxy_app.request_log import RequestRecord

SNAPSHOT = {
    "queue_length": 4,
    "active_requests": 2,
    "queue_by_source": {"direct_api": 1, "custom_app": 3},
    "active_by_source": {"web_chat": 2},
    "backends": [
        {"url": "http://gpu-a:11434", "healthy": True, "slots": 2, "in_use": 2},
        {"url": "http://gpu-b:11434", "healthy": False, "slots": 1, "in_use": 0},
    ],
}


class FakeWriter:
    """The three numbers the metrics read from the request-log writer."""

    def __init__(self) -> None:
        self.buffer_length = 0
        self.dropped_total = 0
        self.written_total = 0


def finished(source="direct_api", status=200, wait_ms=0.0, stage=None):
    return RequestRecord(
        request_id="r",
        method="POST",
        endpoint="/api/chat",
        status=status,
        source=source,
        queue_wait_ms=wait_ms,
        stage=stage,
    )


def scrape(metrics: Metrics) -> dict[tuple[str, tuple], float]:
    """Every sample as ``{(name, sorted labels): value}``."""
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


@pytest.fixture
def state():
    return {"snapshot": dict(SNAPSHOT), "connections": 3}


@pytest.fixture
def writer():
    return FakeWriter()


@pytest.fixture
def metrics(state, writer):
    return Metrics(lambda: state["snapshot"], writer=writer, open_connections_fn=lambda: state["connections"])


def test_it_counts_requests_by_source_and_status(metrics):
    metrics.observe(finished("direct_api", 200))
    metrics.observe(finished("direct_api", 200))
    metrics.observe(finished("custom_app", 503))
    metrics.observe(finished(None, 401, wait_ms=None))
    samples = scrape(metrics)
    assert samples[("seadragon_requests_total", (("source", "direct_api"), ("status", "200")))] == 2
    assert samples[("seadragon_requests_total", (("source", "custom_app"), ("status", "503")))] == 1
    assert samples[("seadragon_requests_total", (("source", "unknown"), ("status", "401")))] == 1


def test_it_counts_client_disconnects_by_stage(metrics):
    assert scrape(metrics)[("seadragon_client_disconnects_total", (("stage", "streaming"),))] == 0
    metrics.observe(finished(status=499, stage="queued", wait_ms=None))
    metrics.observe(finished(status=499, stage="streaming"))
    metrics.observe(finished(status=499, stage="streaming"))
    metrics.observe(finished(status=200, stage=None))
    samples = scrape(metrics)
    assert samples[("seadragon_client_disconnects_total", (("stage", "queued"),))] == 1
    assert samples[("seadragon_client_disconnects_total", (("stage", "streaming"),))] == 2
    assert samples[("seadragon_client_disconnects_total", (("stage", "waiting_upstream"),))] == 0
    assert ("seadragon_client_disconnects_total", (("stage", "unknown"),)) not in samples


def test_it_reads_queue_and_active_from_the_scheduler_at_scrape_time(metrics, state):
    samples = scrape(metrics)
    assert samples[("seadragon_queue_length", (("source", "custom_app"),))] == 3
    assert samples[("seadragon_queue_length", (("source", "direct_api"),))] == 1
    assert samples[("seadragon_queue_length", (("source", "web_chat"),))] == 0
    assert samples[("seadragon_active_requests", ())] == 2
    state["snapshot"] = {**SNAPSHOT, "queue_by_source": {"web_chat": 7}, "active_requests": 5}
    samples = scrape(metrics)
    assert samples[("seadragon_queue_length", (("source", "web_chat"),))] == 7
    assert samples[("seadragon_queue_length", (("source", "custom_app"),))] == 0
    assert samples[("seadragon_active_requests", ())] == 5


def test_it_shows_each_backend_up_or_down_with_its_slots(metrics):
    samples = scrape(metrics)
    assert samples[("seadragon_backend_up", (("backend", "http://gpu-a:11434"),))] == 1
    assert samples[("seadragon_backend_up", (("backend", "http://gpu-b:11434"),))] == 0
    assert samples[("seadragon_backend_slots", (("backend", "http://gpu-a:11434"),))] == 2
    assert samples[("seadragon_backend_slots_in_use", (("backend", "http://gpu-a:11434"),))] == 2


def test_it_reads_upstream_connections_and_the_log_writer_live(metrics, state, writer):
    writer.buffer_length, writer.dropped_total, writer.written_total = 12, 4, 900
    state["connections"] = 6
    samples = scrape(metrics)
    assert samples[("seadragon_upstream_open_connections", ())] == 6
    assert samples[("seadragon_log_buffer_length", ())] == 12
    assert samples[("seadragon_log_rows_dropped_total", ())] == 4
    assert samples[("seadragon_log_rows_written_total", ())] == 900


def test_it_measures_queue_waits_of_dispatched_requests_in_a_histogram(metrics):
    metrics.observe(finished("web_chat", wait_ms=200))
    metrics.observe(finished("web_chat", wait_ms=3000))
    metrics.observe(finished("web_chat", status=499, stage="queued", wait_ms=None))
    samples = scrape(metrics)
    web = ("source", "web_chat")
    assert samples[("seadragon_queue_wait_seconds_count", (web,))] == 2
    assert samples[("seadragon_queue_wait_seconds_sum", (web,))] == pytest.approx(3.2)
    assert samples[("seadragon_queue_wait_seconds_bucket", (("le", "0.25"), web))] == 1
    assert samples[("seadragon_queue_wait_seconds_bucket", (("le", "5.0"), web))] == 2


def test_every_metric_name_carries_the_seadragon_prefix(metrics):
    metrics.observe(finished())
    body, _ = metrics.render()
    families = list(text_string_to_metric_families(body.decode()))
    assert families
    assert all(family.name.startswith("seadragon_") for family in families)


def test_two_instances_keep_separate_counts(state, writer):
    first = Metrics(lambda: SNAPSHOT, writer=writer)
    second = Metrics(lambda: SNAPSHOT, writer=writer)
    first.observe(finished())
    key = ("seadragon_requests_total", (("source", "direct_api"), ("status", "200")))
    assert scrape(first)[key] == 1
    assert key not in scrape(second)


def test_it_leaves_out_what_it_was_not_given():
    samples = scrape(Metrics(lambda: {}))
    names = {name for name, _ in samples}
    assert "seadragon_active_requests" in names
    assert not names & {"seadragon_log_buffer_length", "seadragon_upstream_open_connections"}
