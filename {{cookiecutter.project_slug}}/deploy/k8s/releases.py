"""The images each release put in a namespace, kept in the cluster so that a rollback
re-applies them (`make k8s-release`, `make k8s-rollback`).

A release is the API Deployment's image and the CronJobs' image. The history is the
ConfigMap `<deployment>-releases` in the namespace (key `history`, a JSON list, oldest
first): what ran before the first release made here is recorded too, so the first
rollback has somewhere to go. A rollback goes to the release before the one running and
forgets the ones after it: run twice, it goes two releases back, never back and forth.

    python3 deploy/k8s/releases.py before   --namespace NS --deployment NAME --slug SLUG
    python3 deploy/k8s/releases.py after    --namespace NS --deployment NAME --slug SLUG
    python3 deploy/k8s/releases.py target   --namespace NS --deployment NAME --slug SLUG
    python3 deploy/k8s/releases.py settle   --namespace NS --deployment NAME --api IMG --train IMG

Standard library and kubectl only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

KEPT = 20  # releases remembered per Deployment
CRONJOB_IMAGE = "{.items[*].spec.jobTemplate.spec.template.spec.containers[0].image}"


class Refused(Exception):
    """Nothing to do, said in one line (exit 2)."""


def kubectl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    # kubectl from PATH, as make and CI run it; arguments only from this module
    return subprocess.run(  # noqa: S603
        ["kubectl", *args],  # noqa: S607
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )


def live(namespace: str, deployment: str, slug: str) -> dict[str, str] | None:
    """The images running now, or None before the first deployment; the CronJobs' (those
    labelled with `slug`) only when a slug is given."""
    api = kubectl(
        "-n", namespace, "get", f"deployment/{deployment}",
        "-o", "jsonpath={.spec.template.spec.containers[0].image}",
    )  # fmt: skip
    if api.returncode != 0 or not api.stdout.strip():
        return None
    if not slug:
        return {"api": api.stdout.strip(), "train": ""}
    jobs = kubectl(
        "-n", namespace, "get", "cronjobs", "-l", f"app.kubernetes.io/name={slug}",
        "-o", f"jsonpath={CRONJOB_IMAGE}",
    )  # fmt: skip
    train = sorted(set(jobs.stdout.split())) if jobs.returncode == 0 else []
    return {"api": api.stdout.strip(), "train": train[0] if train else ""}


def history(namespace: str, deployment: str) -> list[dict[str, str]]:
    found = kubectl(
        "-n", namespace, "get", f"configmap/{deployment}-releases",
        "-o", "jsonpath={.data.history}",
    )  # fmt: skip
    if found.returncode != 0:
        if "NotFound" in found.stderr or "not found" in found.stderr:
            return []
        raise RuntimeError(f"kubectl could not read {deployment}-releases: {found.stderr.strip()}")
    return list(json.loads(found.stdout or "[]"))


def save(namespace: str, deployment: str, releases: list[dict[str, str]]) -> None:
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"{deployment}-releases",
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": deployment},
        },
        "data": {"history": json.dumps(releases[-KEPT:], indent=1)},
    }
    applied = kubectl("apply", "-f", "-", stdin=json.dumps(configmap))
    if applied.returncode != 0:
        raise RuntimeError(f"kubectl could not write {deployment}-releases: {applied.stderr}")


def same(left: dict[str, str], right: dict[str, str]) -> bool:
    return (left["api"], left["train"]) == (right["api"], right["train"])


def stamped(release: dict[str, str]) -> dict[str, str]:
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"api": release["api"], "train": release["train"], "at": at}


def record(namespace: str, deployment: str, release: dict[str, str]) -> None:
    releases = history(namespace, deployment)
    if not releases or not same(releases[-1], release):
        save(namespace, deployment, [*releases, stamped(release)])


def target(namespace: str, deployment: str, slug: str) -> dict[str, str]:
    """The release to go back to: the one before the running one, or, when the running
    one was never recorded (a release that failed half-way), the last recorded."""
    releases = history(namespace, deployment)
    running = live(namespace, deployment, slug)
    if releases and running is not None and not same(releases[-1], running):
        return releases[-1]
    if len(releases) < 2:
        raise Refused(
            f"{namespace}/{deployment}: no earlier release recorded in "
            f"configmap/{deployment}-releases to roll back to"
        )
    return releases[-2]


def settle(namespace: str, deployment: str, release: dict[str, str]) -> None:
    """After a rollback to `release`: forget the releases recorded after it."""
    releases = history(namespace, deployment)
    index = max((i for i, entry in enumerate(releases) if same(entry, release)), default=None)
    kept = releases[: index + 1] if index is not None else [*releases, stamped(release)]
    save(namespace, deployment, kept)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=["before", "after", "target", "settle"])
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--deployment", required=True)
    parser.add_argument("--slug", default="")
    parser.add_argument("--api", default="")
    parser.add_argument("--train", default="")
    args = parser.parse_args(argv)
    given = {"api": args.api, "train": args.train}
    try:
        if args.step in ("before", "after"):
            running = live(args.namespace, args.deployment, args.slug)
            if running is not None:
                record(args.namespace, args.deployment, running)
        elif args.step == "target":
            found = target(args.namespace, args.deployment, args.slug)
            print(found["api"], found["train"] or "-")
        else:
            settle(args.namespace, args.deployment, given)
    except Refused as refused:
        print(refused, file=sys.stderr)
        return 2
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
