"""framequeue's HTTP side: the job API, the operator dashboard, Prometheus metrics."""

from workers.api.app import create_app

__all__ = ["create_app"]
