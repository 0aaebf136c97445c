"""Errors raised for bad input. Their messages name the offending file, field or argument."""


class EgoPressError(ValueError):
    """Base class of user-facing errors; the CLI prints them without a traceback."""


class ConfigError(EgoPressError):
    """A configuration value is invalid."""


class DataError(EgoPressError):
    """Input data (files, arrays, messages) is missing, corrupt or inconsistent."""


class CheckpointError(EgoPressError):
    """A checkpoint is missing or incompatible with the requested model."""
