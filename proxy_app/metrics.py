"""Prometheus metrics for ``GET /metrics`` (docs/contract.md §6), on a registry of their own.

Wiring::

    metrics = Metrics(scheduler.snapshot, writer=writer, open_connections_fn=upstream.open_connections)
    metrics.observe(rec)                 # per finished request, next to writer.record(rec)
    body, content_type = metrics.render()

Counters move with ``observe()``; gauges (queue, active, backends, log buffer,
upstream connections) are read from the live objects at scrape time, so a
scrape is never staler than the scheduler itself. Each ``Metrics`` owns its
``CollectorRegistry``: many apps in one test process never collide.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from common.policies import normalise_model_name
from proxy_app.cloud_policy import is_cloud_model
from proxy_app.live_stats import SOURCES
from proxy_app.request_log import RequestRecord

DISCONNECT_STAGES = ("queued", "waiting_upstream", "streaming")
UNKNOWN = "unknown"  # label value for a request refused before it had a source, or a stage not given
WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class LogBuffer(Protocol):
    """What the metrics read from the request-log writer."""

    @property
    def buffer_length(self) -> int: ...

    dropped_total: int
    written_total: int


class Metrics:
    """The gateway's metrics; ``snapshot_fn`` returns the scheduler's snapshot dict."""

    def __init__(
        self,
        snapshot_fn: Callable[[], Mapping],
        writer: LogBuffer | None = None,
        open_connections_fn: Callable[[], int] | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "seadragon_requests",
            "Proxied requests by source and final status.",
            ["source", "status"],
            registry=self.registry,
        )
        self._disconnects = Counter(
            "seadragon_client_disconnects",
            "Clients that left before their response ended, by where it was.",
            ["stage"],
            registry=self.registry,
        )
        for stage in DISCONNECT_STAGES:
            self._disconnects.labels(stage)  # present at 0 from the start
        self._waits = Histogram(
            "seadragon_queue_wait_seconds",
            "Time dispatched requests waited for a slot.",
            ["source"],
            buckets=WAIT_BUCKETS,
            registry=self.registry,
        )
        # Cloud models run on ollama.com, not on the GPU (docs/contract.md §3): counted apart.
        self._cloud = Counter(
            "seadragon_cloud_requests",
            "Requests for Ollama cloud models (no GPU slot, never queued) by source and final status.",
            ["source", "status"],
            registry=self.registry,
        )
        # docs/contract.md §13: the slot time of every request that held one, by source.
        self._gpu = Counter(
            "seadragon_gpu_seconds",
            "GPU time (seconds a slot was held, dispatch to last byte or failure) by source.",
            ["source"],
            registry=self.registry,
        )
        for source in SOURCES:
            self._gpu.labels(source)  # present at 0 from the start
        # docs/contract.md §12: requests whose load options or keep_alive the gateway changed.
        self._adjusted = Counter(
            "seadragon_load_options_adjusted",
            "Requests whose load options or keep_alive a model profile (or LOAD_OPTIONS) changed, by model.",
            ["model"],
            registry=self.registry,
        )
        self.registry.register(_LiveCollector(snapshot_fn, writer, open_connections_fn))

    def observe(self, rec: RequestRecord) -> None:
        """Count one finished request."""
        source = rec.source or UNKNOWN
        self._requests.labels(source, str(rec.status)).inc()
        if is_cloud_model(rec.model):
            self._cloud.labels(source, str(rec.status)).inc()
        if rec.status == 499:
            self._disconnects.labels(rec.stage or UNKNOWN).inc()
        if rec.adjusted:
            self._adjusted.labels(normalise_model_name(rec.model or "")).inc()
        if rec.queue_wait_ms is not None:
            self._waits.labels(source).observe(rec.queue_wait_ms / 1000)
        if rec.gpu_ms is not None:
            self._gpu.labels(source).inc(rec.gpu_ms / 1000)

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4


class _LiveCollector:
    """Gauges read from the scheduler, the writer and the upstream client at scrape time."""

    def __init__(
        self,
        snapshot_fn: Callable[[], Mapping],
        writer: LogBuffer | None,
        open_connections_fn: Callable[[], int] | None,
    ) -> None:
        self._snapshot_fn = snapshot_fn
        self._writer = writer
        self._open_connections_fn = open_connections_fn

    def collect(self) -> Iterator[Metric]:
        snapshot = self._snapshot_fn()
        queue = GaugeMetricFamily(
            "seadragon_queue_length", "Requests waiting for a slot, by source.", labels=["source"]
        )
        by_source = snapshot.get("queue_by_source") or {}
        for source in SOURCES:
            queue.add_metric([source], by_source.get(source, 0))
        yield queue
        yield GaugeMetricFamily(
            "seadragon_active_requests",
            "Requests holding a slot.",
            value=snapshot.get("active_requests", 0),
        )
        yield from self._backends(snapshot.get("backends") or ())
        if self._open_connections_fn is not None:
            yield GaugeMetricFamily(
                "seadragon_upstream_open_connections",
                "Requests open to Ollama right now.",
                value=self._open_connections_fn(),
            )
        if self._writer is not None:
            yield GaugeMetricFamily(
                "seadragon_log_buffer_length",
                "Request-log rows waiting to be written.",
                value=self._writer.buffer_length,
            )
            yield CounterMetricFamily(
                "seadragon_log_rows_dropped",
                "Request-log rows lost: buffer full, refused by the database, or unwritten at shut-down.",
                value=self._writer.dropped_total,
            )
            yield CounterMetricFamily(
                "seadragon_log_rows_written",
                "Request-log rows written to the database.",
                value=self._writer.written_total,
            )

    @staticmethod
    def _backends(backends) -> Iterator[Metric]:
        up = GaugeMetricFamily("seadragon_backend_up", "1 if the backend is healthy.", labels=["backend"])
        slots = GaugeMetricFamily("seadragon_backend_slots", "Concurrent slots.", labels=["backend"])
        in_use = GaugeMetricFamily("seadragon_backend_slots_in_use", "Slots held.", labels=["backend"])
        for backend in backends:
            url = str(backend.get("url"))
            up.add_metric([url], 1 if backend.get("healthy") else 0)
            slots.add_metric([url], backend.get("slots", 0))
            in_use.add_metric([url], backend.get("in_use", 0))
        yield from (up, slots, in_use)
