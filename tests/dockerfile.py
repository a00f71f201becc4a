"""Read a rendered Dockerfile and replay a target's recipe without a Docker engine.

Replaying runs the target's stages in order with the container's `/app` mapped to a
scratch directory: RUN lines through `sh`, COPY from the build context filtered by
`.dockerignore`, ARG, ENV and WORKDIR as written. What cannot run outside a container
does nothing and is listed: base images, user management, ownership changes and
Debian packages (the host's own are used).
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

SKIPPED_COMMANDS = ("groupadd", "useradd", "chown", "apt-get")


@dataclass
class Instruction:
    keyword: str
    arguments: str


@dataclass
class Stage:
    name: str
    parent: str
    instructions: list[Instruction] = field(default_factory=list)


def instructions(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped."""
    logical, pending = [], ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    parsed = []
    for line in logical:
        keyword, _, arguments = line.strip().partition(" ")
        parsed.append(Instruction(keyword.upper(), " ".join(arguments.split())))
    return parsed


def stages(text: str) -> dict[str, Stage]:
    found: dict[str, Stage] = {}
    args: dict[str, str] = {}
    current: Stage | None = None
    for instruction in instructions(text):
        if instruction.keyword == "ARG" and current is None:
            name, _, default = instruction.arguments.partition("=")
            args[name] = default
        elif instruction.keyword == "FROM":
            words = instruction.arguments.split()
            image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), words[0])
            name = words[2] if len(words) > 2 and words[1].upper() == "AS" else str(len(found))
            current = found[name] = Stage(name, image)
        elif current is not None:
            current.instructions.append(instruction)
    return found


def chain(all_stages: dict[str, Stage], target: str) -> list[Stage]:
    """The target and the stages it is built FROM, first one first."""
    order = [all_stages[target]]
    while order[0].parent in all_stages:
        order.insert(0, all_stages[order[0].parent])
    return order


def exec_form(arguments: str) -> list[str]:
    words = json.loads(arguments)
    assert isinstance(words, list), f"not exec form: {arguments}"
    return [str(word) for word in words]


def ignored(relative: str, patterns: list[str]) -> bool:
    """.dockerignore semantics for the patterns used here: last match wins, ! re-includes."""
    verdict = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.rstrip("/")
        parts = relative.split("/")
        prefixes = ["/".join(parts[: index + 1]) for index in range(len(parts))]
        glob = body.replace("**/", "")
        if any(fnmatch.fnmatch(prefix, body) for prefix in prefixes) or (
            body.startswith("**/") and any(fnmatch.fnmatch(part, glob) for part in parts)
        ):
            verdict = not negate
    return verdict


@dataclass
class Replay:
    context: Path
    root: Path  # stands for the container's /
    env: dict[str, str]
    skipped: list[str] = field(default_factory=list)
    workdir: str = "/"
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    exposed: list[int] = field(default_factory=list)
    user: str = ""
    build_args: dict[str, str] = field(default_factory=dict)
    args: dict[str, str] = field(default_factory=dict)

    def path(self, container_path: str) -> Path:
        absolute = (
            container_path if container_path.startswith("/") else f"{self.workdir}/{container_path}"
        )
        return self.root / absolute.lstrip("/")

    def rewrite(self, text: str) -> str:
        """Container paths in a command or value, pointed into the scratch root."""
        return re.sub(r"(?<![\w.])/(app|var/lib/apt)\b", lambda m: f"{self.root}/{m[1]}", text)

    def substitute(self, text: str) -> str:
        """${NAME} of the stage's ARGs, as Docker expands them in COPY."""
        return re.sub(r"\$\{(\w+)\}", lambda m: self.args.get(m[1], ""), text)

    def patterns(self) -> list[str]:
        ignore = self.context / ".dockerignore"
        lines = ignore.read_text(encoding="utf-8").splitlines() if ignore.is_file() else []
        return [line.strip() for line in lines if line.strip() and not line.startswith("#")]

    def matches(self, source: str) -> list[Path]:
        """A COPY source: a path, or a glob that may match nothing (Docker needs one match)."""
        if any(char in source for char in "*?["):
            return sorted(self.context.glob(source))
        if not (self.context / source).exists():
            raise FileNotFoundError(f"COPY {source}: not in the build context")
        return [self.context / source]

    def copy_from_context(self, sources: list[str], destination: str) -> None:
        patterns = self.patterns()
        target = self.path(destination)
        matched = [path for source in sources for path in self.matches(source)]
        if not matched:
            raise FileNotFoundError(f"COPY {' '.join(sources)}: not in the build context")
        for origin in matched:
            source = origin.relative_to(self.context).as_posix()
            files = (
                [origin]
                if origin.is_file()
                else sorted(p for p in origin.rglob("*") if p.is_file())
            )
            kept = [
                f for f in files if not ignored(f.relative_to(self.context).as_posix(), patterns)
            ]
            if not kept:
                raise FileNotFoundError(f"COPY {source}: excluded by .dockerignore")
            for file in kept:
                if origin.is_file():
                    into = target / file.name if destination.endswith("/") else target
                else:
                    into = target / file.relative_to(origin)
                into.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, into)

    def run(self, stage: Stage) -> None:
        for instruction in stage.instructions:
            keyword, arguments = instruction.keyword, instruction.arguments
            if keyword == "WORKDIR":
                self.workdir = arguments
                self.path(arguments).mkdir(parents=True, exist_ok=True)
            elif keyword == "ENV":
                for pair in shlex.split(arguments):
                    name, _, value = pair.partition("=")
                    value = value.replace("$PATH", self.env.get("PATH", ""))
                    self.env[name] = self.rewrite(value)
            elif keyword == "ARG":
                name, _, default = arguments.partition("=")
                self.args[name] = self.build_args.get(name, default)
            elif keyword == "RUN" and arguments.startswith("["):
                self.run_command([self.rewrite(word) for word in exec_form(arguments)], arguments)
            elif keyword == "RUN":
                self.run_shell(arguments)
            elif keyword == "COPY":
                self.copy(self.substitute(arguments))
            elif keyword == "CMD":
                self.cmd = exec_form(arguments)
            elif keyword == "HEALTHCHECK":
                self.healthcheck = exec_form(arguments.split(" CMD ", 1)[1])
            elif keyword == "EXPOSE":
                self.exposed += [int(port) for port in arguments.split()]
            elif keyword == "USER":
                self.user = arguments
            else:
                self.skipped.append(f"{keyword} {arguments}")

    def run_shell(self, command: str) -> None:
        self.run_command(["sh", "-c", self.rewrite(command)], command)

    def stubs(self) -> Path:
        """A folder of commands that only note their call, first on PATH: the skipped ones."""
        folder = self.root.parent / f"{self.root.name}-stubs"
        for name in SKIPPED_COMMANDS:
            stub = folder / name
            if not stub.exists():
                folder.mkdir(parents=True, exist_ok=True)
                stub.write_text(f'#!/bin/sh\necho "RUN {name} $*" >> "{folder}/calls"\n')
                stub.chmod(0o755)
        return folder

    def run_command(self, command: list[str], written: str) -> None:
        env = {**self.env, **self.args}  # a stage's ARGs are its RUN lines' environment
        env["PATH"] = f"{self.stubs()}:{env.get('PATH', '')}"
        result = subprocess.run(
            command,
            cwd=self.path(self.workdir),
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        calls = self.stubs() / "calls"
        if calls.is_file():
            self.skipped += calls.read_text(encoding="utf-8").splitlines()
            calls.unlink()
        if result.returncode != 0:
            raise RuntimeError(
                f"RUN {written} failed:\n{result.stdout[-2000:]}{result.stderr[-3000:]}"
            )

    def copy(self, arguments: str) -> None:
        words = [word for word in arguments.split() if not word.startswith("--chown")]
        from_stage = next(
            (word.split("=", 1)[1] for word in words if word.startswith("--from=")), None
        )
        words = [word for word in words if not word.startswith("--")]
        *sources, destination = words
        if from_stage is None:
            self.copy_from_context(sources, destination)
            return
        for source in sources:
            # Stages share the scratch root, as they share /app paths in the image.
            origin, target = self.path(source), self.path(destination)
            if origin == target:
                continue
            if not origin.exists():  # an external image's file (e.g. the uv binary)
                self.skipped.append(f"COPY --from={from_stage} {source} {destination}")
                continue
            shutil.copytree(origin, target, dirs_exist_ok=True)


def needed(all_stages: dict[str, Stage], target: str) -> list[str]:
    """Stages `target` builds on or copies from, in Dockerfile order, without `target`'s chain."""
    own = {stage.name for stage in chain(all_stages, target)}
    wanted: set[str] = set()
    pending = list(own)
    while pending:
        stage = all_stages[pending.pop()]
        for instruction in stage.instructions:
            match = re.search(r"--from=(\S+)", instruction.arguments)
            if instruction.keyword == "COPY" and match and match.group(1) in all_stages:
                for source in chain(all_stages, match.group(1)):
                    if source.name not in wanted:
                        wanted.add(source.name)
                        pending.append(source.name)
    return [name for name in all_stages if name in wanted and name not in own]


def prune(root: Path, kept: list[Path]) -> None:
    """Remove what the final image would not hold: anything not under a kept path."""
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts)):
        if not path.exists() and not path.is_symlink():
            continue
        inside = any(path == keep or keep in path.parents for keep in kept)
        above = any(path in keep.parents for keep in kept)
        if not inside and not above:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def copied_from_stages(all_stages: dict[str, Stage], target: str) -> list[str]:
    """Container paths the target's chain copies out of other stages of this Dockerfile."""
    paths = []
    for stage in chain(all_stages, target):
        for instruction in stage.instructions:
            match = re.search(r"--from=(\S+)", instruction.arguments)
            if instruction.keyword == "COPY" and match and match.group(1) in all_stages:
                paths.append(instruction.arguments.split()[-1])
    return paths


def replay(
    context: Path,
    root: Path,
    target: str,
    env: dict[str, str],
    build_args: dict[str, str] | None = None,
) -> Replay:
    """Build `target` of context/Dockerfile into `root`; returns how to start it.

    Stages it copies from run first in the same root (their files sit at the paths the
    image uses, so a virtualenv stays valid); of their files only what the target copies
    is kept; then the target's own stages run.
    """
    all_stages = stages((context / "Dockerfile").read_text(encoding="utf-8"))
    build_args = build_args or {}
    builder = Replay(context, root, dict(env), build_args=build_args)
    for name in needed(all_stages, target):
        builder.args = {}
        builder.run(all_stages[name])
    prune(root, [builder.path(path) for path in copied_from_stages(all_stages, target)])
    recipe = Replay(context, root, dict(env), skipped=builder.skipped, build_args=build_args)
    for stage in chain(all_stages, target):
        recipe.args = {}
        recipe.run(stage)
    return recipe
