"""framequeue's dramatiq middleware."""

from workers.middleware.fallback import ModelFallbacks
from workers.middleware.job_status import JobStatusMiddleware
from workers.middleware.key_rotation import KeyRotation
from workers.middleware.put_back import PutBack, fail_with_reason, put_back
from workers.middleware.rate_limit import ModelRateLimits

__all__ = ["JobStatusMiddleware", "KeyRotation", "ModelFallbacks", "ModelRateLimits", "PutBack", "fail_with_reason",
           "put_back"]
