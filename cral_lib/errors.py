"""Errors that ``cral_lib`` raises on bad input.

Every error says what was wrong, with the offending value, and what to do about it.
The command line turns a :class:`CralError` into a one-line message and a non-zero
exit status instead of a traceback.
"""

from __future__ import annotations


class CralError(Exception):
    """Base class of the errors that carry a message meant for the user."""


class DataError(CralError, ValueError):
    """A release folder, cache or file is missing, malformed or inconsistent."""


class ConfigError(CralError, ValueError):
    """A configuration value is out of range or inconsistent with another one."""


class CheckpointError(CralError, RuntimeError):
    """A checkpoint is missing, corrupt, or belongs to another run or dataset."""


class TrainingError(CralError, RuntimeError):
    """Training cannot go on (for example: the loss became NaN or infinite)."""


class WeightsError(CralError, RuntimeError):
    """Pretrained weights could not be obtained or do not fit the network."""
