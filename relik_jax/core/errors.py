"""Errors caused by user input: command-line entry points print them as one line."""


class RelikJaxError(Exception):
    """Base class of the errors a user can act on (bad files, bad settings, bad input)."""


class CheckpointError(RelikJaxError, ValueError):
    """A model folder or checkpoint that cannot be loaded as asked."""


class ConfigError(RelikJaxError, ValueError):
    """A configuration value that is missing, unknown or out of range."""


class DataError(RelikJaxError, ValueError):
    """An input file or record that does not have the expected format."""
