"""What ``run`` counts after each drain batch and push round: the Prometheus metrics
(``service/health.py``) and one structured log line each."""

from __future__ import annotations

import logging

from connector.service.drain_types import DrainStats
from connector.service.health import Metrics
from connector.service.pusher import PushStats

__all__ = ["count_drain", "count_push"]

log = logging.getLogger("connector.worker")


def count_drain(metrics: Metrics, batch: DrainStats, seconds: float) -> None:
    """A drained batch in /metrics and one ``drain.batch`` log line."""
    metrics.batches.observe(seconds)
    metrics.drain_lag.set(batch.lag_s)
    for entity, n in batch.by_entity.items():
        metrics.entities.labels(entity, "to_erp").inc(n)
    for outcome in ("inserted", "updated", "deleted", "unchanged", "conflicts", "bad"):
        if getattr(batch, outcome):
            metrics.synced.labels("to_erp", outcome).inc(getattr(batch, outcome))
    log.info(
        "drain.batch",
        extra={
            "records": batch.records,
            "inserted": batch.inserted,
            "updated": batch.updated,
            "deleted": batch.deleted,
            "conflicts": batch.conflicts,
            "bad": batch.bad,
            "ms": round(seconds * 1000),
        },
    )


def count_push(metrics: Metrics, pushed: PushStats) -> None:
    """A push round in /metrics and one ``push.round`` log line (nothing for an empty one)."""
    if not pushed.records:
        return
    metrics.push_rounds.inc()
    for entity, n in pushed.by_entity.items():
        metrics.entities.labels(entity, "to_portal").inc(n)
    for outcome in ("added", "updated", "deleted", "unchanged", "held", "failed"):
        if getattr(pushed, outcome):
            metrics.synced.labels("to_portal", outcome).inc(getattr(pushed, outcome))
    log.info(
        "push.round",
        extra={
            "records": pushed.records,
            "added": pushed.added,
            "updated": pushed.updated,
            "deleted": pushed.deleted,
            "held": pushed.held,
            "failed": pushed.failed,
        },
    )
