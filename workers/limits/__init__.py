"""Limits shared through Redis: GCRA request rates, leased concurrency slots and caps on unfinished jobs."""

from workers.limits.job_cap import JobCap
from workers.limits.limiter import RedisLimiter

__all__ = ["JobCap", "RedisLimiter"]
