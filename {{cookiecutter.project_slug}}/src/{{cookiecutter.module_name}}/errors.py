"""Errors a user can fix. The CLI prints them as one line and exits 2, no traceback."""


class ProjectError(Exception):
    """Base of the errors below."""


class ParamsError(ProjectError, ValueError):
    """params.yaml is missing, unreadable or invalid; the message names the key."""


class DataError(ProjectError, ValueError):
    """The data breaks an expectation; the message names the file and the column."""


class GateError(ProjectError):
    """The model misses a threshold of evaluate.gate in params.yaml."""


class RegistryError(ProjectError):
    """A registry operation cannot be done; the message says why."""
