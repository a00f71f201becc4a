"""Errors a user can fix, and the exit status of every command.

The CLI prints a ProjectError as one `error:` line (what, which value, how to fix) and
exits with EXIT_ERROR, never with a traceback; a traceback is a bug of the project.
"""

EXIT_OK = 0
# The command ran and its check said no (`<slug> <command> --help` says when).
# Scripts and CI act on it; it is not an error.
EXIT_CHECK_FAILED = 1
# A problem to fix: a bad flag, setting, parameter or file, a model or alias that is not
# registered, the quality gate. argparse exits 2 for a bad flag too.
EXIT_ERROR = 2
# Could not run: a tracking server, database or bucket it needs failed or was out of
# reach. The same command may work later: a scheduled job retries this status only.
EXIT_UNAVAILABLE = 3


class ProjectError(Exception):
    """Base of the errors below."""


class ParamsError(ProjectError, ValueError):
    """params.yaml is missing, unreadable or invalid; the message names the key."""


class SettingsError(ProjectError, ValueError):
    """A setting from a flag, the environment or .env is invalid; the message names it."""


class DataError(ProjectError, ValueError):
    """The data breaks an expectation; the message names the file and the column."""


class GateError(ProjectError):
    """The model misses a threshold of evaluate.gate in params.yaml."""


class RegistryError(ProjectError):
    """A registry operation cannot be done; the message says why."""
