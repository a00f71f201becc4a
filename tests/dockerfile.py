"""A rendered Dockerfile's stages and instructions, for the static checks of test_bake.

The images themselves are built and run by podman (tests/containers.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


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
