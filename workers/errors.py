"""framequeue's exceptions. Stages signal with these; middleware decides what they mean."""


class FramequeueError(Exception):
    """Root of framequeue's errors."""


class InvalidJob(FramequeueError):
    """A message that no retry can fix: it goes to the dead-letter queue with this reason."""


class StageInputMissing(FramequeueError):
    """An intermediate that the previous stage should have stored is not there (retried)."""
