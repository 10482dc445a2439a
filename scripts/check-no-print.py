#!/usr/bin/env python3
"""Fails when library code prints: libraries return values or emit `tracing` events; only the binary decides what
reaches the terminal.

The rule, precisely. In every crates/*/src/**/*.rs file, a line is a violation when it calls `print!`, `println!`,
`eprint!`, `eprintln!` or `dbg!` (optionally path-qualified, as in `std::println!`), unless:
  - the line is a comment (its text starts with `//`, which covers doc comments and their examples);
  - it lies in test code: an item under `#[cfg(test)]` (other attributes may sit between), from its first line to
    the closing line rustfmt gives it (`}` or `};` at the item's own indentation), or a one-line item ending in
    `;`; a module file that `#[cfg(test)] mod NAME;` declares (NAME.rs or NAME/mod.rs) is skipped whole;
  - the file is a binary, example or bench: src/main.rs, src/bin/**, or a `path` of a [[bin]], [[example]] or
    [[bench]] target in the crate's Cargo.toml.
Text inside string literals is not told apart from code; a message that spells a macro call can be reworded.

Usage:
    scripts/check-no-print.py               # checks this repository's crates/
    scripts/check-no-print.py ROOT          # checks ROOT/crates/ (no allowlist)
    scripts/check-no-print.py --self-test   # checks scripts/fixtures/no-print/ against its expected.txt

Sites in scripts/no-print-allow.txt (`path: code`, the path from the repository root and the line's text without
its indentation, one per line, `#` comments) are accepted while they exist; an entry that matches nothing is an
error, so the list only ever shrinks.
"""

import re
import sys
import tomllib
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
ALLOW_FILE = SCRIPTS / "no-print-allow.txt"
FIXTURE = SCRIPTS / "fixtures" / "no-print"

PRINT = re.compile(r"(?<![\w!])(?:print|println|eprint|eprintln|dbg)!\s*[(\[{]")
CFG_TEST = re.compile(r"^\s*#\[cfg\(test\)\]\s*$")
ATTRIBUTE = re.compile(r"^\s*#\[")
TEST_MODULE_FILE = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;")


def indentation(line):
    return line[: len(line) - len(line.lstrip())]


def test_ranges(lines):
    """Yields (first, last) line indexes of items under #[cfg(test)], and the module names declared as files."""
    ranges, module_files = [], []
    i = 0
    while i < len(lines):
        if not CFG_TEST.match(lines[i]):
            i += 1
            continue
        item = i + 1
        while item < len(lines) and ATTRIBUTE.match(lines[item]):
            item += 1
        if item >= len(lines):
            break
        declared = TEST_MODULE_FILE.match(lines[item])
        if declared:
            module_files.append(declared.group(1))
        end = item
        if not lines[item].rstrip().endswith(";"):
            closing = {indentation(lines[item]) + "}", indentation(lines[item]) + "};"}
            while end < len(lines) and lines[end].rstrip() not in closing:
                end += 1
        ranges.append((i, end))
        i = end + 1
    return ranges, module_files


def declared_targets(crate):
    """Files the crate's manifest names as binaries, examples or benches."""
    manifest = crate / "Cargo.toml"
    if not manifest.exists():
        return set()
    data = tomllib.loads(manifest.read_text())
    return {
        (crate / target["path"]).resolve()
        for kind in ("bin", "example", "bench")
        for target in data.get(kind, [])
        if "path" in target
    }


def module_dir(path):
    """The folder where the child modules of the module in `path` live."""
    if path.name in ("lib.rs", "main.rs", "mod.rs"):
        return path.parent
    return path.parent / path.stem


def violations(root):
    """(path relative to root, line number, line text) for every print in library code under root/crates."""
    found = []
    for crate in sorted(p for p in (root / "crates").iterdir() if (p / "src").is_dir()):
        src = crate / "src"
        skipped = declared_targets(crate) | {(src / "main.rs").resolve()}
        files = sorted(src.rglob("*.rs"))
        # A test module declared as a file: NAME.rs, or the folder NAME/ (its mod.rs and its children).
        test_files, test_dirs = set(), set()
        for path in files:
            _, modules = test_ranges(path.read_text().splitlines())
            for name in modules:
                base = module_dir(path)
                test_files.add((base / f"{name}.rs").resolve())
                test_dirs.add((base / name).resolve())
        for path in files:
            resolved = path.resolve()
            if resolved in skipped or resolved in test_files or (src / "bin") in path.parents:
                continue
            if any(parent in test_dirs for parent in resolved.parents):
                continue
            lines = path.read_text().splitlines()
            ranges, _ = test_ranges(lines)
            for number, line in enumerate(lines):
                if line.lstrip().startswith("//") or any(a <= number <= b for a, b in ranges):
                    continue
                if PRINT.search(line):
                    found.append((path.relative_to(root).as_posix(), number + 1, line.strip()))
    return found


def read_allowed(path):
    allowed = set()
    if not path.exists():
        return allowed
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        file, sep, code = line.partition(": ")
        if not sep or not code.strip():
            sys.exit(f"{path}:{number}: expected `path: code`, got {line!r}")
        allowed.add((file.strip(), code.strip()))
    return allowed


def check(root, allowed):
    problems = []
    used = set()
    for file, number, code in violations(root):
        if (file, code) in allowed:
            used.add((file, code))
        else:
            problems.append(f"{file}:{number}: prints from library code: {code}")
    for file, code in sorted(allowed - used):
        problems.append(f"{file}: `{code}` no longer prints: remove it from {ALLOW_FILE.name}")
    return problems


def self_test():
    expected = sorted(
        line.strip()
        for line in (FIXTURE / "expected.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    found = sorted(f"{file}:{number}" for file, number, _ in violations(FIXTURE))
    failures = 0
    if found != expected:
        failures += 1
        print(f"self-test fixture: expected {expected}\n  found    {found}")
    # The allowlist accepts a listed site and reports one that has gone.
    first = violations(FIXTURE)[0]
    if any(first[0] in p and f":{first[1]}:" in p for p in check(FIXTURE, {(first[0], first[2])})):
        failures += 1
        print("self-test allowlist: a listed site was not accepted")
    if not any("no longer prints" in p for p in check(FIXTURE, {("crates/gone/src/lib.rs", "println!(\"x\");")})):
        failures += 1
        print("self-test allowlist: a stale entry was not reported")
    if failures:
        sys.exit(f"check-no-print self-test: {failures} failure(s)")
    print(f"check-no-print self-test: ok ({len(found)} violations found in the fixture, as expected)")


def main(args):
    if args == ["--self-test"]:
        return self_test()
    if len(args) > 1 or (args and args[0].startswith("-")):
        sys.exit(__doc__)
    root, allowed = (Path(args[0]), set()) if args else (REPO, read_allowed(ALLOW_FILE))
    problems = check(root, allowed)
    for p in problems:
        print(f"no-print: {p}", file=sys.stderr)
    if problems:
        sys.exit(f"check-no-print: {len(problems)} problem(s); emit a tracing event or return the value instead")
    print("check-no-print: ok")


if __name__ == "__main__":
    main(sys.argv[1:])
