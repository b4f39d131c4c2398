"""The ``framequeue`` command: ``main`` parses and dispatches; ``services`` adds the long-running services."""

import os

# Before anything imports huggingface_hub or transformers, which read these once, at import: a model a
# command loads (the prompt screen's embeddings at submit) then draws no progress bar and logs no
# warning, since stderr is for the command's one-line error.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from workers.cli.main import main

__all__ = ["main"]
