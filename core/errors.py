"""The project's error types. Every error a user can cause names the file and what to do."""

from __future__ import annotations


class VPPError(Exception):
    """Base class of all errors raised for bad input or environment (not for programming bugs)."""


class CheckpointError(VPPError):
    """A model checkpoint is missing, unreadable or does not fit the model."""


class DataError(VPPError):
    """A frame, video, dataset or annotation file cannot be used."""


class ConfigError(VPPError, ValueError):
    """A model or training config has a key of the wrong type or outside its allowed range.

    Also a ``ValueError``, so callers that validated configs with ``except ValueError`` keep working.
    """
