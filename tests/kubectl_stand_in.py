"""A `kubectl` for the tests of the deploy targets, where no cluster runs.

It keeps the objects applied to it in a JSON file (a cluster's state, in the small), logs
every call, renders `apply -k DIR` with the real kubectl's kustomize, answers `get` with
`-o jsonpath=` (the subset of JSONPath the targets use) from that state, and "runs" the
smoke Job: its container's command against the exported model served on 127.0.0.1, the
Service's DNS name standing for that local server. `kustomize` is the real one's;
`rollout` is logged only.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import sys
from pathlib import Path

SCRIPT = r'''
import json, os, re, signal, socket, subprocess, sys, time
from pathlib import Path

import yaml

REAL, PROJECT_BIN = sys.argv[1], sys.argv[2]
args = sys.argv[3:]
with open(os.environ["KUBECTL_LOG"], "a", encoding="utf-8") as log:
    log.write(" ".join(args) + "\n")
state_file = Path(os.environ["KUBECTL_STATE"])
state = json.loads(state_file.read_text("utf-8")) if state_file.exists() else {}
namespace = "default"
if args[:1] == ["-n"]:
    namespace, args = args[1], args[2:]
KINDS = {"deployment": "Deployment", "cronjobs": "CronJob", "cronjob": "CronJob",
         "configmap": "ConfigMap", "job": "Job"}


def store(doc, default_namespace):
    meta = doc["metadata"]
    state[f'{meta.get("namespace", default_namespace)}/{doc["kind"]}/{meta["name"]}'] = doc


def jsonpath(value, path):
    """{.a.b[0].c}, [*] over lists, [?(@.k=="v")] filters."""
    results = [value]
    for part in re.findall(r'\.([\w-]+)|\[(\*|\d+|\?\(@\.\w+=="[^"]*"\))\]', path.strip("{}")):
        name, index = part
        found = []
        for item in results:
            if name:
                if isinstance(item, dict) and name in item:
                    found.append(item[name])
            elif index == "*":
                found.extend(item if isinstance(item, list) else [])
            elif index.startswith("?"):
                key, wanted = re.match(r'\?\(@\.(\w+)=="([^"]*)"\)', index).groups()
                found.extend(x for x in item if isinstance(x, dict) and x.get(key) == wanted)
            elif isinstance(item, list) and int(index) < len(item):
                found.append(item[int(index)])
        results = found
    return " ".join(r if isinstance(r, str) else json.dumps(r) for r in results)


def run_smoke(job):
    """The Job's container command, here, against the exported model served locally."""
    [container] = job["spec"]["template"]["spec"]["containers"]
    command = list(container["command"])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = command.index("--url") + 1
    os.environ["SMOKE_SERVICE_URL"] = command[url]  # what it would call in the cluster
    command[url] = f"http://127.0.0.1:{port}"
    command[0] = f"{PROJECT_BIN}/{command[0]}"
    server = subprocess.Popen(
        [f"{PROJECT_BIN}/{container['command'][0]}", "serve"],
        env={**os.environ, "MODEL_DIR": "build/model", "HOST": "127.0.0.1",
             "PORT": str(port), "WORKERS": "1"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    job["status"] = {"conditions": [
        {"type": "Complete" if result.returncode == 0 else "Failed", "status": "True"}
    ]}
    job["log"] = result.stdout + result.stderr


if args[:1] == ["kustomize"]:
    os.execv(REAL, [REAL, *args])
if args[:2] == ["apply", "-k"]:
    rendered = subprocess.run([REAL, "kustomize", args[2]], capture_output=True, text=True)
    if rendered.returncode:
        sys.exit(rendered.stderr)
    Path(os.environ["KUBECTL_APPLIED"]).write_text(rendered.stdout, "utf-8")
    selector = args[args.index("-l") + 1] if "-l" in args else None
    for doc in yaml.safe_load_all(rendered.stdout):
        if not doc:
            continue
        if selector:
            key, _, value = selector.partition("!=")
            if doc["metadata"].get("labels", {}).get(key) == value:
                continue
        store(doc, namespace)
elif args[:3] == ["apply", "-f", "-"]:
    for doc in yaml.safe_load_all(sys.stdin.read()):
        if doc:
            if doc["kind"] == "Job":
                run_smoke(doc)
            store(doc, namespace)
elif args[:1] == ["get"]:
    kind, _, name = args[1].partition("/")
    kind = KINDS[kind]
    path = next(a.split("=", 1)[1] for a in args if a.startswith("jsonpath="))
    if name:
        key = f"{namespace}/{kind}/{name}"
        if key not in state:
            sys.exit(f'Error from server (NotFound): {kind.lower()}s "{name}" not found')
        print(jsonpath(state[key], path), end="")
    else:
        label = args[args.index("-l") + 1].split("=") if "-l" in args else None
        items = [
            doc for key, doc in state.items()
            if key.startswith(f"{namespace}/{kind}/")
            and (label is None or doc["metadata"].get("labels", {}).get(label[0]) == label[1])
        ]
        print(jsonpath({"items": items}, path), end="")
elif args[:1] == ["logs"] and args[1].startswith("job/"):
    print(state.get(f"{namespace}/Job/{args[1][4:]}", {}).get("log", ""), end="")
elif args[:1] == ["delete"] and args[1].startswith("job/"):
    state.pop(f"{namespace}/Job/{args[1][4:]}", None)
elif args[:1] == ["port-forward"]:
    sys.exit("no port-forward here")
if args[0] in ("apply", "delete"):
    state_file.write_text(json.dumps(state), "utf-8")
'''


def stand_in_kubectl(directory: Path, project_bin: Path | None = None) -> dict[str, str]:
    """Write the stand-in into `directory`; the environment that puts it first on PATH.
    `project_bin`: the rendered project's .venv/bin, whose CLI the smoke Job runs."""
    real = shutil.which("kubectl")
    assert real is not None, "kubectl is needed to render the kustomize overlays (.ci/run)"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "kubectl.py").write_text(SCRIPT, encoding="utf-8")
    script = directory / "kubectl"
    script.write_text(
        "#!/bin/sh\n"
        f"exec {shlex.quote(sys.executable)} {shlex.quote(str(directory / 'kubectl.py'))} "
        f'{shlex.quote(real)} {shlex.quote(str(project_bin or ""))} "$@"\n',
        encoding="utf-8",
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return {
        "PATH": f"{directory}{os.pathsep}{os.environ['PATH']}",
        "KUBECTL_LOG": str(directory / "kubectl.log"),
        "KUBECTL_APPLIED": str(directory / "applied.yaml"),
        "KUBECTL_STATE": str(directory / "state.json"),
    }
