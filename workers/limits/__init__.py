"""Limits shared through Redis: GCRA request rates, leased concurrency slots, caps on unfinished jobs and
model cooldowns."""

from workers.limits.cooldowns import ModelCooldowns
from workers.limits.job_cap import JobCap
from workers.limits.limiter import RedisLimiter

__all__ = ["JobCap", "ModelCooldowns", "RedisLimiter"]
