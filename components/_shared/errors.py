"""Errors that end a run with one sentence naming the problem.

Everything a user can cause (bad data, bad settings, a model that fails a hard check)
raises a subclass of :class:`PipelineError`. The CLI prints ``str(error)`` and exits
non-zero; inside a KFP task the message is the last line of the task's log.
"""


class PipelineError(Exception):
    """A problem the user can act on; its message is one sentence."""


class DataError(PipelineError):
    """The input data cannot be used (missing file or column, wrong types, empty)."""


class ValidationError(PipelineError):
    """Validation found blocking anomalies; the message lists each one."""


class ModelError(PipelineError):
    """Training or export produced a model that must not ship (NaN loss, parity)."""


class DeployError(PipelineError):
    """A deploy step failed; the serving model and champion alias are unchanged."""


class ConfigError(PipelineError):
    """A setting is invalid (unknown target, bad threshold)."""


class TriggerError(PipelineError):
    """Starting a run failed (host unreachable, credentials refused); nothing was recorded."""


class ServingStateError(PipelineError):
    """What is served, the serving state and the registry disagree; nothing is decided or moved."""
