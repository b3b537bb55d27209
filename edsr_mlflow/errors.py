"""Errors a user can fix. The CLI prints them as one line and exits non-zero."""


class UserError(Exception):
    """A problem with the user's input or environment, with the fix in the message.

    ``str(error)`` is a single line: what is wrong, then what to do about it.
    """

    exit_code = 2
    label = "error"  # the word before the message on the one line the CLI prints


class ConfigError(UserError, ValueError):
    """An invalid parameter (unknown upsampler, unsupported scale, non-positive size...)."""


class DataError(UserError):
    """Missing, unreadable or unusable images or datasets."""


class TrackingError(UserError):
    """The MLflow tracking server cannot be reached or holds nothing usable."""

    exit_code = 3


class NothingToCompare(TrackingError):
    """The store holds no training run that ``compare`` can use (in the scope asked for)."""


class TrainingDiverged(UserError):
    """The loss became NaN or infinite."""

    exit_code = 4
