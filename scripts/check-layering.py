#!/usr/bin/env python3
"""Fails when a workspace crate depends on one later in imgport's one-way flow.

    disk -> guest -> validate -> writer stream -> storage -> cloud -> pipeline

Each crate has a rank (RANKS below). A normal or build dependency must point to a strictly lower rank; equal ranks
may not depend on each other unless the pair is in ALLOWED_SAME_RANK. Dev-dependencies are free, with one rule:
imgport-test-support may only ever be a dev-dependency. imgport-emulator stands beside the flow: it may depend
only on EMULATOR_MAY_USE, and only the root package may take it as a normal dependency. The root package `imgport`
(the binary) may depend on everything. A workspace crate without a rank is an error.

Usage:
    scripts/check-layering.py                  # runs `cargo metadata --format-version 1 --no-deps`
    scripts/check-layering.py METADATA.json    # checks a saved metadata file instead (no allowlist)
    scripts/check-layering.py --self-test      # proves the fixtures in scripts/fixtures/layering/ pass or fail

Edges listed in scripts/layering-allow.txt (`crate -> dependency`, one per line, `#` comments) are accepted while
they exist; an entry whose edge is gone is an error, so the list only ever shrinks.
"""

import json
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
ALLOW_FILE = SCRIPTS / "layering-allow.txt"
FIXTURES = SCRIPTS / "fixtures" / "layering"

RANKS = {
    "imgport-wire": 0,
    "imgport-disk": 1,
    "imgport-net": 1,
    "imgport-guest": 2,
    "imgport-auth": 2,
    "imgport-validate": 3,
    "imgport-storage": 4,
    "imgport-cloud": 5,
    "imgport-pipeline": 6,
}
ROOT = "imgport"
EMULATOR = "imgport-emulator"
EMULATOR_MAY_USE = {"imgport-wire", "imgport-net", "imgport-auth", "imgport-disk"}
TEST_SUPPORT = "imgport-test-support"
# Pairs (crate, dependency) of equal rank that may depend on each other; none today.
ALLOWED_SAME_RANK = set()

KNOWN = set(RANKS) | {ROOT, EMULATOR, TEST_SUPPORT}


def workspace_packages(metadata):
    """The workspace's own packages (a fixture without `workspace_members` lists only those)."""
    ids = metadata.get("workspace_members")
    return [p for p in metadata["packages"] if ids is None or p.get("id") in ids]


def edges(metadata):
    """(crate, dependency, kind) for every dependency of a workspace crate on another workspace crate."""
    packages = workspace_packages(metadata)
    members = {p["name"] for p in packages}
    for package in packages:
        for dep in package.get("dependencies", []):
            if dep["name"] in members and dep["name"] != package["name"]:
                yield package["name"], dep["name"], dep.get("kind") or "normal"


def violation(crate, dep, kind):
    """Why the edge is not allowed, or None."""
    if kind == "dev":
        return None
    if dep == TEST_SUPPORT:
        return f"{crate} has {TEST_SUPPORT} as a {kind} dependency; it may only be a dev-dependency"
    if crate == ROOT:
        return None
    if dep == ROOT:
        return f"{crate} depends on the root package {ROOT}"
    if crate == EMULATOR:
        if dep in EMULATOR_MAY_USE:
            return None
        allowed = ", ".join(sorted(EMULATOR_MAY_USE))
        return f"{EMULATOR} depends on {dep}; the emulator may only use {allowed}"
    if dep == EMULATOR:
        return f"{crate} has {EMULATOR} as a {kind} dependency; only {ROOT} may (others: dev-dependency)"
    if crate == TEST_SUPPORT:
        return None
    rank, dep_rank = RANKS[crate], RANKS[dep]
    if dep_rank < rank or (crate, dep) in ALLOWED_SAME_RANK:
        return None
    where = "later in the flow" if dep_rank > rank else "at the same rank"
    return f"{crate} (rank {rank}) depends on {dep} (rank {dep_rank}), {where}"


def check(metadata, allowed_edges):
    """The list of problems (empty when the workspace is layered correctly)."""
    problems = []
    for package in workspace_packages(metadata):
        if package["name"] not in KNOWN:
            problems.append(f"unknown workspace crate {package['name']}: give it a rank in scripts/check-layering.py")
    seen = set()
    for crate, dep, kind in edges(metadata):
        if crate not in KNOWN or dep not in KNOWN:
            continue
        seen.add((crate, dep))
        why = violation(crate, dep, kind)
        if why and (crate, dep) not in allowed_edges:
            problems.append(why)
    for crate, dep in sorted(allowed_edges - seen):
        problems.append(f"{crate} -> {dep} no longer exists: remove it from {ALLOW_FILE.name}")
    return sorted(set(problems))


def read_allowed(path):
    allowed = set()
    if not path.exists():
        return allowed
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        crate, sep, dep = (part.strip() for part in line.partition("->"))
        if not sep or not crate or not dep:
            sys.exit(f"{path}:{number}: expected `crate -> dependency`, got {line!r}")
        allowed.add((crate, dep))
    return allowed


def cargo_metadata():
    command = ["cargo", "metadata", "--format-version", "1", "--no-deps"]
    try:
        out = subprocess.run(command, cwd=SCRIPTS.parent, check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit(f"check-layering: `{' '.join(command)}` failed: {getattr(e, 'stderr', None) or e}")
    return json.loads(out.stdout)


def self_test():
    """Each fixture names what it expects: `_expect` is a list of substrings, one per problem (empty: passes)."""
    failures = 0
    fixtures = sorted(FIXTURES.glob("*.json"))
    if not fixtures:
        sys.exit(f"no fixtures in {FIXTURES}")
    for fixture in fixtures:
        metadata = json.loads(fixture.read_text())
        expected = metadata.get("_expect", [])
        problems = check(metadata, set())
        matched = len(problems) == len(expected) and all(
            any(e in p for p in problems) for e in expected
        )
        status = "ok" if matched else "FAILED"
        print(f"self-test {fixture.name}: {len(problems)} problem(s) {status}")
        if not matched:
            failures += 1
            print(f"  expected: {expected}\n  found:    {problems}")
    # The allowlist accepts a listed edge and reports one that has gone.
    bad = json.loads((FIXTURES / "bad-emulator-validate.json").read_text())
    if check(bad, {(EMULATOR, "imgport-validate")}) != []:
        failures += 1
        print("self-test allowlist: a listed edge was not accepted")
    good = json.loads((FIXTURES / "good-flow.json").read_text())
    if not any("no longer exists" in p for p in check(good, {(EMULATOR, "imgport-validate")})):
        failures += 1
        print("self-test allowlist: a stale entry was not reported")
    if failures:
        sys.exit(f"check-layering self-test: {failures} failure(s)")
    print("check-layering self-test: ok")


def main(args):
    if args == ["--self-test"]:
        return self_test()
    if len(args) > 1 or (args and args[0].startswith("-")):
        sys.exit(__doc__)
    if args:
        # A saved file is checked as it is: the allowlist belongs to this workspace's current state.
        metadata, allowed = json.loads(Path(args[0]).read_text()), set()
    else:
        metadata, allowed = cargo_metadata(), read_allowed(ALLOW_FILE)
    problems = check(metadata, allowed)
    for p in problems:
        print(f"layering: {p}", file=sys.stderr)
    if problems:
        sys.exit(f"check-layering: {len(problems)} problem(s); the flow is {' -> '.join(FLOW)}")
    print(f"check-layering: {len(workspace_packages(metadata))} crates ok")


FLOW = ["disk", "guest", "validate", "writer stream", "storage", "cloud", "pipeline"]

if __name__ == "__main__":
    main(sys.argv[1:])
