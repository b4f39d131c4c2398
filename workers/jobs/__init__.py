"""A job's life in Redis: its record and events, submission, the stage message, cancellation, outcomes.

``record`` holds the record and its transition script; the other modules build on it.
"""
