"""Validate the answers before cookiecutter renders anything.

Every problem is one line on stderr, ``ERROR: <key>: <what is wrong> — <how to fix>``,
and the hook exits 1, so cookiecutter stops and removes the directory it created.
The checks are plain functions over the answers dict, imported by the template's tests.
"""

from __future__ import annotations

import json
import keyword
import os
import re
import shlex
import subprocess
import sys
import unicodedata
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlparse

# JSON keeps whatever the user typed intact; the raw triple-single-quoted string is safe
# because Jinja's tojson escapes every single quote as \u0027.
ANSWERS_JSON = r"""{{ cookiecutter | tojson }}"""

SUPPORTED_PYTHON = ("3.10", "3.11", "3.12", "3.13")
CHOICES = {
    "python_version": SUPPORTED_PYTHON,
    "task": ("classification", "regression"),
    "model": ("hist_gradient_boosting", "random_forest", "linear", "xgboost", "lightgbm"),
    "dvc_remote": ("local", "s3", "gcs", "azure", "none"),
    "ci": ("github", "none"),
    "deploy": ("kubernetes", "none"),
    "monitoring": ("prometheus", "none"),
    "docker_compose": ("yes", "no"),
    "orchestrator": ("none", "airflow", "kubeflow"),
    "feature_store": ("none", "feast"),
    "open_source_license": ("MIT", "Apache-2.0", "BSD-3-Clause", "Proprietary"),
    "initialize_git": ("yes", "no"),
}
# Import names the rendered project uses (or ships as folders): a package of the same
# name would shadow them.
RESERVED_MODULES = frozenset(
    {
        *("mlflow", "dvc", "fastapi", "starlette", "uvicorn", "pydantic", "pydantic_settings"),
        *("sklearn", "scipy", "numpy", "pandas", "yaml", "prometheus_client", "httpx"),
        *("pytest", "matplotlib", "joblib", "skops", "mypy", "ruff", "setuptools", "pip"),
        *("xgboost", "lightgbm", "feast", "redis"),
        *("typing_extensions", "test", "tests", "src"),
    }
)
CLOUD_REMOTE_SCHEMES = {"s3": "s3", "gcs": "gs", "azure": "azure"}
# What the rendered pyproject.toml installs a driver for (the scheme names the driver).
POSTGRES_DRIVERS = ("postgresql", "postgresql+psycopg", "postgresql+psycopg2")
# Spelt out so that cookiecutter, which renders this file, does not read them as Jinja.
JINJA_OPENERS = tuple("{" + second for second in "%#{")
# The default URI is written into Python source, which must fit its line length.
MAX_TRACKING_URI = 75
FREE_TEXT_LIMITS = {"project_name": 80, "description": 300, "author_name": 100}

MAX_KUBERNETES_SLUG = 44
SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
MODULE_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
GITHUB_OWNER_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$")


class Problem(NamedTuple):
    key: str
    what: str
    fix: str

    def __str__(self) -> str:
        return f"ERROR: {self.key}: {self.what} — {self.fix}"


Answers = Mapping[str, Any]


def check_choices(answers: Answers) -> Iterator[Problem]:
    for key, allowed in CHOICES.items():
        value = answers.get(key)
        if value not in allowed:
            yield Problem(key, f"{value!r} is not supported", f"choose one of {', '.join(allowed)}")


def check_free_text(answers: Answers) -> Iterator[Problem]:
    """Quotes, colons, '#', '&' and unicode are fine (rendered escaped); these are not."""
    for key, limit in FREE_TEXT_LIMITS.items():
        text = str(answers.get(key, ""))
        if not text.strip() and key != "description":
            yield Problem(key, "is empty", "type a name")
        elif len(text) > limit:
            yield Problem(key, f"is {len(text)} characters long", f"keep it to {limit} or fewer")
        elif any(unicodedata.category(char) in ("Cc", "Zl", "Zp") for char in text):
            yield Problem(key, "contains a line break or control character", "keep it on one line")
        elif "<" in text or ">" in text:
            yield Problem(key, "contains '<' or '>'", "remove them: Markdown renders them as HTML")
        elif any(mark in text for mark in JINJA_OPENERS):
            yield Problem(key, "contains a Jinja delimiter", "remove the '{' pairs")


def check_project_slug(answers: Answers) -> Iterator[Problem]:
    slug = str(answers.get("project_slug", ""))
    if not SLUG_RE.match(slug):
        yield Problem(
            "project_slug",
            f"{slug!r} is not a valid distribution, directory and Kubernetes name",
            "use 1-63 lowercase letters, digits and '-'; start and end with a letter or digit",
        )
    # Kubernetes names the manifests derive from it: <slug>-production (a namespace, at
    # most 63) and the <slug>-retrain CronJob (at most 52); Services start with a letter.
    elif answers.get("deploy") == "kubernetes" and (
        len(slug) > MAX_KUBERNETES_SLUG or not slug[0].isalpha()
    ):
        yield Problem(
            "project_slug",
            f"{slug!r} cannot name the Kubernetes objects (deploy=kubernetes)",
            f"start with a letter and use at most {MAX_KUBERNETES_SLUG} characters, "
            "or choose deploy=none",
        )


def check_module_name(answers: Answers) -> Iterator[Problem]:
    name = str(answers.get("module_name", ""))
    # Python 3.10+ lists its own modules; cookiecutter may run on an older one.
    stdlib: frozenset[str] = getattr(sys, "stdlib_module_names", frozenset())
    if not MODULE_RE.match(name) or not name.isidentifier():
        yield Problem(
            "module_name",
            f"{name!r} is not a lowercase Python identifier",
            "use lowercase letters, digits and '_', not starting with a digit",
        )
    elif keyword.iskeyword(name):
        yield Problem("module_name", f"{name!r} is a Python keyword", "pick another name")
    elif name in stdlib:
        yield Problem(
            "module_name", f"{name!r} shadows the standard library module", "pick another name"
        )
    elif name in RESERVED_MODULES:
        yield Problem(
            "module_name",
            f"{name!r} shadows a package the project imports or a project folder",
            "pick another name, e.g. prefix it with your project's name",
        )


def check_author_email(answers: Answers) -> Iterator[Problem]:
    email = str(answers.get("author_email", ""))
    if not EMAIL_RE.match(email):
        yield Problem("author_email", f"{email!r} is not an email address", "use name@domain.tld")


def check_github_owner(answers: Answers) -> Iterator[Problem]:
    # The owner names the repository URL and the image ghcr.io/<owner>/<slug>.
    if answers.get("ci") != "github" and answers.get("deploy") != "kubernetes":
        return
    owner = str(answers.get("github_owner", ""))
    if not GITHUB_OWNER_RE.match(owner):
        yield Problem(
            "github_owner",
            f"{owner!r} is not a valid GitHub user or organisation name",
            "use 1-39 letters, digits or single '-' between them",
        )


def check_tracking_uri(answers: Answers) -> Iterator[Problem]:
    uri = str(answers.get("mlflow_tracking_uri", ""))
    parsed = urlparse(uri)
    scheme = parsed.scheme.split("+")[0]
    if uri != uri.strip() or not uri:
        yield Problem(
            "mlflow_tracking_uri", f"{uri!r} is empty or padded", "use sqlite:///mlflow.db"
        )
    elif len(uri) > MAX_TRACKING_URI:
        yield Problem(
            "mlflow_tracking_uri",
            f"is {len(uri)} characters long",
            f"use at most {MAX_TRACKING_URI}; put a longer one in .env as MLFLOW_TRACKING_URI",
        )
    elif parsed.password:
        yield Problem(
            "mlflow_tracking_uri",
            "contains a password, which would be committed with the code",
            "leave it out; set MLFLOW_TRACKING_URI or the driver's password variable in .env",
        )
    elif scheme == "sqlite":
        if not uri.startswith("sqlite:///") or len(uri) == len("sqlite:///"):
            yield Problem(
                "mlflow_tracking_uri",
                f"{uri!r} names no database file",
                "use sqlite:///mlflow.db (relative) or sqlite:////abs/path.db",
            )
    elif scheme == "postgresql" and parsed.scheme not in POSTGRES_DRIVERS:
        yield Problem(
            "mlflow_tracking_uri",
            f"driver {parsed.scheme!r} is not supported",
            "use postgresql:// (psycopg 3), postgresql+psycopg:// or postgresql+psycopg2://",
        )
    elif scheme in ("http", "https", "postgresql"):
        if not parsed.hostname:
            yield Problem(
                "mlflow_tracking_uri", f"{uri!r} has no host", f"use {scheme}://host:port"
            )
    elif scheme == "databricks" or uri == "databricks":
        pass
    elif scheme in ("", "file"):
        yield Problem(
            "mlflow_tracking_uri",
            f"{uri!r} is a file store, which MLflow 3 no longer accepts by default",
            "use sqlite:///mlflow.db for a local store",
        )
    else:
        yield Problem(
            "mlflow_tracking_uri",
            f"scheme {parsed.scheme!r} is not supported",
            "use sqlite:///…, http(s)://…, postgresql://… or databricks",
        )


def check_dvc_remote(answers: Answers) -> Iterator[Problem]:
    remote = answers.get("dvc_remote")
    url = str(answers.get("dvc_remote_url", ""))
    scheme = CLOUD_REMOTE_SCHEMES.get(str(remote))
    if scheme:
        parsed = urlparse(url)
        if not url:
            yield Problem(
                "dvc_remote_url",
                f"is required for dvc_remote={remote}",
                f"use {scheme}://bucket/path",
            )
        elif parsed.scheme != scheme or not parsed.netloc:
            yield Problem(
                "dvc_remote_url",
                f"{url!r} does not match dvc_remote={remote}",
                f"use {scheme}://bucket/path",
            )
    elif remote == "local" and "://" in url:
        yield Problem(
            "dvc_remote_url",
            f"{url!r} is a URL but dvc_remote=local takes a directory",
            "give a path, or choose the dvc_remote that matches the URL",
        )
    elif remote == "none" and url:
        yield Problem(
            "dvc_remote_url",
            "is set but dvc_remote=none would ignore it",
            "leave it empty, or choose the dvc_remote it belongs to",
        )


def check_orchestrator(answers: Answers) -> Iterator[Problem]:
    if answers.get("orchestrator") == "kubeflow" and answers.get("deploy") != "kubernetes":
        yield Problem(
            "orchestrator",
            "kubeflow runs each step as a pod of the train image on Kubernetes, "
            "but deploy=none renders no cluster settings",
            "choose deploy=kubernetes, or orchestrator=airflow or none",
        )


def check_feature_store(answers: Answers) -> Iterator[Problem]:
    orchestrator = answers.get("orchestrator")
    if answers.get("feature_store") == "feast" and orchestrator != "none":
        yield Problem(
            "feature_store",
            f"the {orchestrator} steps run prepare, train, evaluate and register, "
            "not the feature store's features and materialize stages that train needs",
            "choose orchestrator=none with feature_store=feast",
        )


CHECKS = (
    check_choices,
    check_free_text,
    check_project_slug,
    check_module_name,
    check_author_email,
    check_github_owner,
    check_tracking_uri,
    check_dvc_remote,
    check_orchestrator,
    check_feature_store,
)


def validate(answers: Answers) -> list[Problem]:
    return [problem for check in CHECKS for problem in check(answers)]


def created_parents(slug: str, output_dir: str) -> list[Path]:
    """Folders cookiecutter made for a slug with '/' in it, deepest first.

    Cookiecutter removes only the project folder itself when a hook fails.
    """
    base = Path(output_dir).resolve()
    parents, current = [], base
    for part in Path(slug).parts[:-1]:
        current = (current / part).resolve()
        if current != base and base in current.parents:
            parents.append(current)
    return sorted(set(parents), key=lambda path: len(path.parts), reverse=True)


def remove_created_parents_later(slug: str, output_dir: str) -> None:
    """Once cookiecutter has removed the project folder, remove the empty parents too."""
    parents = [str(path) for path in created_parents(slug, output_dir)]
    if not parents:
        return
    project_dir = str(Path.cwd())
    script = (
        "import os, sys, time\n"
        "deadline = time.time() + 10\n"
        "while os.path.exists(sys.argv[1]) and time.time() < deadline:\n"
        "    time.sleep(0.02)\n"
        "for path in sys.argv[2:]:\n"
        "    try:\n"
        "        os.rmdir(path)\n"
        "    except OSError:\n"
        "        pass\n"
    )
    subprocess.Popen(
        [sys.executable, "-c", script, project_dir, *parents],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def template_defaults(answers: Answers) -> dict[str, Any]:
    """cookiecutter.json's plain defaults (a choice's first value); derived ones are left out.

    Empty when the template folder is unknown (cruft), so every answer is then repeated.
    """
    # A relative _repo_dir is relative to where cookiecutter was started, not to this hook.
    path = (
        Path(os.environ.get("PWD", ".")) / str(answers.get("_repo_dir", "")) / "cookiecutter.json"
    )
    try:
        context = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {
        key: value[0] if isinstance(value, list) else value
        for key, value in context.items()
        if not key.startswith("_") and not (isinstance(value, str) and "{" in value)
    }


def derived(key: str, answers: Answers) -> str | None:
    """What cookiecutter would fill in for a derived answer, or None when unknown."""
    if key == "module_name":
        return str(answers.get("project_slug", "")).replace("-", "_")
    if key == "project_slug":
        try:
            from slugify import slugify  # cookiecutter's own dependency
        except ImportError:
            return None
        return str(slugify(str(answers.get("project_name", ""))))
    return None


def changed_answers(answers: Answers, rejected: list[str]) -> dict[str, str]:
    """The answers that differ from what --no-input would choose, rejected ones first."""
    defaults = template_defaults(answers)
    keys = [key for key in answers if not key.startswith("_")]
    keys.sort(key=lambda key: key not in rejected)
    changed: dict[str, str] = {}
    for key in keys:
        value = str(answers[key])
        default = defaults[key] if key in defaults else derived(key, answers)
        if key in rejected or value != (str(default) if default is not None else None):
            changed[key] = value
    return changed


def shell_word(text: str) -> str:
    """`text` quoted for a POSIX shell, on one line even when it holds a line break."""
    if text.isprintable():
        return shlex.quote(text)

    def escape(char: str) -> str:
        if char.isprintable() and char not in "\\'":
            return char
        return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"

    return "$'" + "".join(map(escape, text)) + "'"  # bash and zsh decode \xHH, \uHHHH


def rerun_command(answers: Answers, rejected: list[str]) -> str:
    """The one command that renders again with these answers, once the rejected are fixed."""
    changed = changed_answers(answers, rejected)
    template = str(answers.get("_template") or "<template>")
    if "_commit" in answers and "_output_dir" not in answers:  # cruft create
        context = json.dumps(changed, ensure_ascii=False)
        words = ["cruft", "create", "--no-input", "--extra-context", context, template]
        return " ".join(map(shell_word, words))
    command = ["cookiecutter", "--no-input", template]
    output_dir = str(answers.get("_output_dir", ""))
    here = os.path.realpath(os.environ.get("PWD", "."))
    if output_dir and os.path.realpath(output_dir) != here:
        command[2:2] = ["--output-dir", output_dir]
    words = command + [f"{key}={value}" for key, value in changed.items()]
    return " ".join(map(shell_word, words))


def main(answers: Answers) -> int:
    problems = validate(answers)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        rejected = list(dict.fromkeys(problem.key for problem in problems))
        print(
            f"cookiecutter-mlops: {len(problems)} answer(s) rejected; nothing was generated.\n"
            f"Your answers are kept in this command: fix {', '.join(rejected)} in it and run it:\n"
            f"  {rerun_command(answers, rejected)}",
            file=sys.stderr,
        )
        remove_created_parents_later(
            str(answers.get("project_slug", "")), str(answers.get("_output_dir", "."))
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(json.loads(ANSWERS_JSON)))
