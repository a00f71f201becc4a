"""Train, evaluate, register and serve this project's model."""

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "{{ cookiecutter.project_slug }}"
try:
    __version__ = version(DISTRIBUTION)
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
