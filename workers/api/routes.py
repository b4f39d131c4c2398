"""The routers the app serves."""

from __future__ import annotations

from fastapi import APIRouter

from workers.api import batches, dashboard, docs, jobs, metrics, usage

ROUTERS: list[APIRouter] = [jobs.router, batches.router, usage.router, dashboard.router, metrics.router, docs.router]
