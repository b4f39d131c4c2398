"""Limits shared through Redis: GCRA request rates and leased concurrency slots."""

from workers.limits.limiter import RedisLimiter

__all__ = ["RedisLimiter"]
