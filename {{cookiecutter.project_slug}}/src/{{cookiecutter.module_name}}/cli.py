"""The project's one command line: `{{ cookiecutter.project_slug }} <command>`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from {{ cookiecutter.module_name }} import __version__
from {{ cookiecutter.module_name }}.config import ParamsError, Settings, load_params


def show_config(args: argparse.Namespace) -> int:
    """Print the settings and parameters the other commands would use."""
    settings = Settings()
    params = load_params(settings.params_path)
    resolved = {
        "settings": settings.model_dump(mode="json"),
        "params": params.model_dump(mode="json"),
    }
    print(json.dumps(resolved, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="{{ cookiecutter.project_slug }}")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("config", help=show_config.__doc__).set_defaults(handler=show_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except ParamsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
