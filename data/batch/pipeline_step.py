"""The work of each step of data/build-pipeline: artifact metadata in, artifact metadata out.

Reads the step's input (JSON) on stdin and prints its output (JSON). Nothing is really built: the
steps derive names, digests and sizes from their inputs, so a run shows what flows between jobs.
Usage: pipeline_step.py checkout | build <component> | package | publish
"""

import hashlib
import json
import sys


def digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def checkout(source: dict) -> dict:
    repository = source.get("repository", "https://git.example.com/shop.git")
    ref = source.get("ref", "main")
    return {"repository": repository, "ref": ref, "commit": digest(repository, ref)}


def build(checkout_output: dict, component: str) -> dict:
    commit = checkout_output["commit"]
    return {
        "component": component,
        "commit": commit,
        "artifact": f"{component}-{commit}.tar.gz",
        "sha256": digest(component, commit),
        "sizeBytes": 1024 * (7 if component == "frontend" else 13),
    }


def package(builds: list) -> dict:
    commits = {b["commit"] for b in builds}
    if len(commits) != 1:
        raise SystemExit(f"builds are of different commits: {sorted(commits)}")
    commit = commits.pop()
    return {
        "commit": commit,
        "bundle": f"shop-{commit}.zip",
        "contents": sorted(b["artifact"] for b in builds),
        "sizeBytes": sum(b["sizeBytes"] for b in builds),
    }


def publish(package_output: dict) -> dict:
    return {
        "published": f"registry.example.com/shop:{package_output['commit']}",
        "bundle": package_output["bundle"],
        "contents": package_output["contents"],
    }


def main() -> None:
    step, *arguments = sys.argv[1:]
    data = json.load(sys.stdin)
    if step == "checkout":
        result = checkout(data)
    elif step == "build":
        result = build(data, arguments[0])
    elif step == "package":
        result = package(data)
    elif step == "publish":
        result = publish(data)
    else:
        raise SystemExit(f"unknown step {step!r}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
