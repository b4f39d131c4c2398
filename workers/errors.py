"""framequeue's exceptions. Stages signal with these; middleware decides what they mean."""


class FramequeueError(Exception):
    """Root of framequeue's errors."""


class InvalidJob(FramequeueError):
    """A message that no retry can fix: it goes to the dead-letter queue with this reason."""


class StageInputMissing(FramequeueError):
    """An intermediate that the previous stage should have stored is not there (retried)."""


class Deferred(FramequeueError):
    """The message must wait ``delay_ms`` (for quota, a key, a slot): put back, retries untouched."""

    def __init__(self, delay_ms: int, reason: str) -> None:
        super().__init__(f"{reason}; waiting {delay_ms} ms")
        self.delay_ms = delay_ms
        self.reason = reason


class ModelUnavailable(FramequeueError):
    """A catalog model this worker cannot run: unknown here, or its weights will not load (not retried)."""


class NoUsableKey(FramequeueError):
    """A provider has no key left to try: every one is disabled, or none was configured."""


class OverCap(FramequeueError):
    """Taking ``new`` more jobs would put their owner's unfinished jobs over ``cap`` (``workers/limits/job_cap.py``)."""

    def __init__(self, new: int, unfinished: int, cap: int) -> None:
        already = f"{unfinished} unfinished jobs and " if unfinished else ""
        super().__init__(f"{already}{new} more would be over the cap of {cap} unfinished jobs")
        self.new, self.unfinished, self.cap = new, unfinished, cap
