"""Check each answer as soon as it is typed, and ask again, instead of after the last prompt.

cookiecutter has no per-prompt validation, but it renders the `__check_<key>` entries of
cookiecutter.json, in order, right after `<key>` is answered. Each one calls the
`recheck` filter below with the answer so far: in a terminal a rejected answer is
explained in the pre-gen hook's words and asked again until it passes; without one
(`--no-input`, CI, cruft's renders) nothing is asked and the pre-gen hook reports every
problem at the end. The checks are the pre-gen hook's own, so there is one rule per field.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
from collections.abc import MutableMapping
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from jinja2 import Environment, pass_context
from jinja2.ext import Extension
from jinja2.runtime import Context

TEMPLATE_ROOT = Path(__file__).resolve().parent


@cache
def pre_gen_hook() -> ModuleType:
    """hooks/pre_gen_project.py, imported as a module (its Jinja line is an inert string)."""
    path = TEMPLATE_ROOT / "hooks" / "pre_gen_project.py"
    spec = importlib.util.spec_from_file_location("cookiecutter_mlops_pre_gen", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def questions() -> dict[str, Any]:
    context = json.loads((TEMPLATE_ROOT / "cookiecutter.json").read_text(encoding="utf-8"))
    prompts: dict[str, Any] = context.get("__prompts__", {})
    return prompts


def interactive() -> bool:
    return sys.stdin.isatty() and "--no-input" not in sys.argv


def field_problems(answers: MutableMapping[str, Any], key: str) -> list[Any]:
    """The pre-gen hook's problems with `key`, given the answers typed so far."""
    return [problem for problem in pre_gen_hook().validate(answers) if problem.key == key]


def ask_again(answers: MutableMapping[str, Any], key: str) -> None:
    from cookiecutter.prompt import read_user_variable  # type: ignore[import-untyped]

    while problems := field_problems(answers, key):
        for problem in problems:
            print(problem, file=sys.stderr)
        answers[key] = read_user_variable(key, str(answers[key]), questions(), "  ")


@pass_context
def recheck(context: Context, value: Any, key: str) -> str:
    """Render as "" once `key`'s answer passes; ask again in a terminal until it does."""
    answers = context.get("cookiecutter")
    if isinstance(answers, MutableMapping) and key in answers and interactive():
        ask_again(answers, key)
    return ""


def without_rejection_traceback(record: logging.LogRecord) -> bool:
    """Drop cookiecutter's traceback of a pre-gen rejection: the hook already said why.

    A failure of any other hook keeps its traceback: that one is a bug to report.
    """
    rejected = record.args == ("pre_gen_project",) and "Stopping generation" in record.msg
    return not rejected


class AnswerChecks(Extension):
    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.filters["recheck"] = recheck
        hooks_log = logging.getLogger("cookiecutter.hooks")
        if without_rejection_traceback not in hooks_log.filters:
            hooks_log.addFilter(without_rejection_traceback)
