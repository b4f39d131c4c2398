"""Usage per tenant over a range of UTC days, summed from the day hashes the workers keep.

``framequeue usage``, ``GET /v1/usage`` and the dashboard's usage page all read it here, so they
agree to the digit; the CSV they export is :meth:`UsageReport.csv`. The hashes are written by the
job-status middleware (workers/jobs/usage.py) and kept for the job retention plus 31 days.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import redis

from queue_config.stages import STAGES
from workers.jobs.usage import MEASURES, NO_MODEL, day_key, tenants_key, totals_key

#: The longest range one report reads (a day hash per tenant and day).
MAX_DAYS = 400
#: The columns of a report's rows, in the CSV's order.
CSV_COLUMNS = ("tenant", "stage", "model", *MEASURES)


@dataclass(frozen=True)
class UsageRow:
    """What one tenant used of one stage and model over the report's days."""

    tenant: str
    stage: str
    #: The catalog model; "" for a stage that runs none.
    model: str
    #: Runs that completed the stage (a job counts once per stage it completed).
    jobs: int = 0
    wall_s: float = 0.0
    device_s: float = 0.0
    calls: int = 0
    cost: float = 0.0


@dataclass(frozen=True)
class TenantTotal:
    """A tenant's usage over the report's days, every stage summed."""

    tenant: str
    wall_s: float
    device_s: float
    calls: int
    cost: float


@dataclass(frozen=True)
class UsageReport:
    """Usage from ``since`` to ``until`` (UTC days, both included), a row per tenant, stage and model."""

    since: str
    until: str
    rows: list[UsageRow] = field(default_factory=list)

    @property
    def totals(self) -> list[TenantTotal]:
        by_tenant: dict[str, list[UsageRow]] = {}
        for row in self.rows:
            by_tenant.setdefault(row.tenant, []).append(row)
        return [TenantTotal(tenant, sum(r.wall_s for r in rows), sum(r.device_s for r in rows),
                            sum(r.calls for r in rows), sum(r.cost for r in rows))
                for tenant, rows in sorted(by_tenant.items())]

    def as_dict(self) -> dict[str, Any]:
        return {"since": self.since, "until": self.until, "rows": [asdict(row) for row in self.rows],
                "totals": [asdict(total) for total in self.totals]}

    def csv(self) -> str:
        """The rows as CSV with a header line: seconds to the millisecond, cost to six decimals."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for row in self.rows:
            writer.writerow([row.tenant, row.stage, row.model, row.jobs, f"{row.wall_s:.3f}", f"{row.device_s:.3f}",
                             row.calls, f"{row.cost:.6f}"])
        return out.getvalue()


def parse_since(text: str, *, today: dt.date) -> dt.date:
    """The first day of ``--since``: ``YYYY-MM-DD``, ``today``, or ``Nd`` (the last N days, today included).

    Raises:
        ValueError: one line saying what the text should look like.
    """
    text = text.strip()
    if text == "today":
        return today
    if match := re.fullmatch(r"(\d{1,4})d", text):
        days = int(match.group(1))
        if not 1 <= days <= MAX_DAYS:
            raise ValueError(f"since: from 1d to {MAX_DAYS}d, not {text!r}")
        return today - dt.timedelta(days=days - 1)
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"since: a day (YYYY-MM-DD), 'today' or a number of days such as 7d, not {text[:40]!r}") \
            from None


def utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def usage_report(client: redis.Redis, namespace: str, since: dt.date, until: dt.date | None = None, *,
                 tenant: str | None = None) -> UsageReport:
    """Every tenant's usage (only ``tenant``'s when given) from ``since`` to ``until`` (default: today, UTC).

    Raises:
        ValueError: ``until`` before ``since``, or more than ``MAX_DAYS`` days.
    """
    until = until or utc_today()
    days = (until - since).days + 1
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"from {since} to {until}: a report covers 1 to {MAX_DAYS} days")
    first_day = (since - dt.date(1970, 1, 1)).days
    tenants = [tenant] if tenant else cast("list[str]", client.zrangebyscore(tenants_key(namespace), first_day, "+inf"))
    pipe = client.pipeline(transaction=False)
    for name in tenants:
        for offset in range(days):
            pipe.hgetall(day_key(namespace, name, (since + dt.timedelta(days=offset)).isoformat()))
    sums: dict[tuple[str, str, str], dict[str, float]] = {}
    for index, fields in enumerate(pipe.execute() if tenants else []):
        for (stage, model, measure), value in _split(fields, 3):
            row = sums.setdefault((tenants[index // days], stage, _model(model)), {})
            row[measure] = row.get(measure, 0.0) + value
    rows = [UsageRow(name, stage, model, jobs=int(found.get("jobs", 0)), wall_s=found.get("wall_s", 0.0),
                     device_s=found.get("device_s", 0.0), calls=int(found.get("calls", 0)), cost=found.get("cost", 0.0))
            for (name, stage, model), found in sorted(sums.items(), key=_in_plan_order)]
    return UsageReport(since.isoformat(), until.isoformat(), rows)


def usage_totals(client: redis.Redis, namespace: str) -> dict[tuple[str, str, str], dict[str, float]]:
    """Everything used since Redis last lost its data, by (tenant, stage, model): counters that only grow."""
    totals: dict[tuple[str, str, str], dict[str, float]] = {}
    for (tenant, stage, model, measure), value in _split(client.hgetall(totals_key(namespace)), 4):
        totals.setdefault((tenant, stage, _model(model)), {})[measure] = value
    return totals


def _split(fields: Any, parts: int) -> list[tuple[list[str], float]]:
    """A usage hash's fields split at ``:`` into ``parts`` parts, with their values."""
    found = []
    for raw_field, value in cast("dict[Any, Any]", fields).items():
        text = raw_field.decode() if isinstance(raw_field, bytes) else raw_field
        split = text.split(":")
        if len(split) == parts:  # anything else is no usage field
            found.append((split, float(value)))
    return found


def _model(name: str) -> str:
    return "" if name == NO_MODEL else name


def _in_plan_order(item: tuple[tuple[str, str, str], Any]) -> tuple[str, int, str]:
    (tenant, stage, model), _ = item
    return tenant, list(STAGES).index(stage) if stage in STAGES else len(STAGES), model
