"""framequeue's dramatiq middleware."""

from workers.middleware.job_status import JobStatusMiddleware

__all__ = ["JobStatusMiddleware"]
