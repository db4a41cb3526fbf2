"""/metrics: a Prometheus collector that reads the database at scrape time, so every replica reports
the same truth (no per-process counters that reset on restart or differ between replicas)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from sqlalchemy import Float, case, cast, extract, func, select
from sqlalchemy.orm import Session

from bot.delivery.outbox import Outbox
from bot.domain import qa
from bot.domain.models import ChangelogHead, Escalation, OutboxItem
from bot.domain.scorecard import DECISIONS
from bot.ops import clock
from bot.ops.db import Database

log = logging.getLogger("aopbot.metrics")

DECISION_BUCKETS = (60, 300, 900, 1800, 3600, 14400, 86400)


def _decision_seconds(session: Session):
    esc = Escalation
    if session.get_bind().dialect.name == "postgresql":
        return cast(extract("epoch", esc.decided_at - esc.created_at), Float)
    return (func.julianday(esc.decided_at) - func.julianday(esc.created_at)) * 86400.0


class DatabaseCollector:
    def __init__(self, db: Database, outbox: Outbox):
        self.db = db
        self.outbox = outbox

    def describe(self) -> Iterator[Metric]:
        # Names only, without touching the database when the collector is registered.
        return iter(())

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("aopbot_database_up", "1 if the database answered this scrape")
        try:
            families = self._from_database()
        except Exception:
            log.exception("metrics: database unreachable")
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _from_database(self) -> list[Metric]:
        esc = Escalation
        escalations = GaugeMetricFamily("aopbot_escalations", "Escalations by process, tier and status",
                                        labels=["process", "tier", "status"])
        decisions = HistogramMetricFamily("aopbot_time_to_decision_seconds",
                                          "Time from escalation to approval or rejection", labels=["process"])
        failed = GaugeMetricFamily("aopbot_outbox_failed", "Outbox deliveries that failed for good, by kind",
                                   labels=["kind"])
        entries = GaugeMetricFamily("aopbot_changelog_entries", "Agent change-log entries by process",
                                    labels=["process"])
        with self.db.transaction() as s:
            for pid, tier, status, n in s.execute(select(esc.process_id, esc.tier, esc.status, func.count())
                                                  .group_by(esc.process_id, esc.tier, esc.status)):
                escalations.add_metric([pid, str(tier), status], n)
            seconds = _decision_seconds(s)
            buckets = [func.sum(case((seconds <= b, 1), else_=0)) for b in DECISION_BUCKETS]
            q = (select(esc.process_id, func.count(), func.sum(seconds), *buckets)
                 .where(esc.status.in_(DECISIONS), esc.decided_at.is_not(None)).group_by(esc.process_id))
            for pid, count, total, *cumulative in s.execute(q):
                pairs = [(str(float(b)), int(n or 0)) for b, n in zip(DECISION_BUCKETS, cumulative, strict=True)]
                decisions.add_metric([pid], pairs + [("+Inf", int(count))], float(total or 0))
            for kind, n in s.execute(select(OutboxItem.kind, func.count()).where(OutboxItem.status == "failed")
                                     .group_by(OutboxItem.kind)):
                failed.add_metric([kind], n)
            # The chain tip's seq is the entry count (append-only, seq from 1): no scan of the log.
            for pid, seq in s.execute(select(ChangelogHead.process_id, ChangelogHead.seq)):
                entries.add_metric([pid], seq)
            qa_families = _qa_families(s)
        count, age = self.outbox.backlog()
        backlog = GaugeMetricFamily("aopbot_outbox_backlog", "Outbox rows waiting for delivery", value=count)
        oldest = GaugeMetricFamily("aopbot_outbox_oldest_age_seconds", "Age of the oldest undelivered outbox row",
                                   value=age)
        return [escalations, decisions, failed, entries, backlog, oldest, *qa_families]


def _qa_families(s: Session) -> list[Metric]:
    """Sampling QA per process: verdicts so far, the error rate over the last 30 days with its 95%
    Wilson interval and sample size, and the sampled actions waiting for review (and overdue)."""
    now = clock.now()
    reviews = GaugeMetricFamily("aopbot_qa_reviews", "QA verdicts on sampled agent actions, by process and verdict",
                                labels=["process", "verdict"])
    days = qa.WINDOW.days
    rate = GaugeMetricFamily("aopbot_qa_error_rate", f"Wrong / reviewed over the last {days} days", labels=["process"])
    low = GaugeMetricFamily("aopbot_qa_error_rate_lower", "Lower bound of its 95% Wilson interval", labels=["process"])
    high = GaugeMetricFamily("aopbot_qa_error_rate_upper", "Upper bound of its 95% Wilson interval",
                             labels=["process"])
    size = GaugeMetricFamily("aopbot_qa_sample_size", f"Reviews over the last {days} days", labels=["process"])
    pending = GaugeMetricFamily("aopbot_qa_pending", "Sampled actions waiting for review", labels=["process"])
    overdue = GaugeMetricFamily("aopbot_qa_overdue", "Sampled actions unreviewed past the tier's target",
                                labels=["process"])
    ever = qa.error_rates(s, None, None, None)
    recent = qa.error_rates(s, None, now - qa.WINDOW, None)
    waits = qa.waiting(s, None, now)
    for pid in sorted(set(ever) | set(waits)):  # every process QA has sampled: a series never just vanishes
        total, last, w = ever.get(pid, qa.ErrorRate(pid)), recent.get(pid, qa.ErrorRate(pid)), waits.get(pid)
        reviews.add_metric([pid, "ok"], total.reviewed - total.wrong)
        reviews.add_metric([pid, "wrong"], total.wrong)
        size.add_metric([pid], last.reviewed)
        if last.reviewed:
            rate.add_metric([pid], last.rate or 0.0)
            low.add_metric([pid], last.interval[0])
            high.add_metric([pid], last.interval[1])
        pending.add_metric([pid], w.pending if w else 0)
        overdue.add_metric([pid], w.overdue if w else 0)
    return [reviews, rate, low, high, size, pending, overdue]


def exporter(db: Database, outbox: Outbox) -> Callable[[], tuple[bytes, str]]:
    registry = CollectorRegistry()
    registry.register(DatabaseCollector(db, outbox))

    def render() -> tuple[bytes, str]:
        return generate_latest(registry), CONTENT_TYPE_LATEST

    return render
