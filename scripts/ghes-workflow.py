#!/usr/bin/env python3
"""Writes .github/workflows/deploy-ghes.yml, the reusable workflow for GitHub Enterprise Server,
from .github/workflows/deploy.yml.

    python3 scripts/ghes-workflow.py          # write deploy-ghes.yml
    python3 scripts/ghes-workflow.py --check  # exit 1, naming the drift, when it is out of date

The two differ in one thing: deploy.yml's environment jobs say `deployment: false` (GitHub then
creates no deployment per job beside the one `record --github-deployment` creates for the exact
commit). GitHub documents that key for github.com and GHE.com only, and a server may refuse a
workflow with a key it does not know as a whole, so the GHES twin has none: each environment job
there gets GitHub's own deployment object as well. Everything else (the GHES artifact steps
included) is the same file. Standard library only.
"""

import difflib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / ".github" / "workflows" / "deploy.yml"
OUT = ROOT / ".github" / "workflows" / "deploy-ghes.yml"

HEADER = """\
# GENERATED from deploy.yml by scripts/ghes-workflow.py: edit deploy.yml, then run the script
# (CI fails when this file drifts). The reusable workflow for GitHub Enterprise Server: the same
# jobs without `environment.deployment` (a key GitHub documents for github.com and GHE.com only;
# a server that does not know it may refuse the whole workflow). Call it as
# `uses: <owner>/shipgate/.github/workflows/deploy-ghes.yml@<commit>` on the instance.
#
"""

# `environment:` then its `name:` then `deployment: false` (with an optional comment), each
# one level deeper than the last: the only form deploy.yml uses.
BLOCK = re.compile(
    r"^(?P<indent>[ ]+)environment:\n"
    r"(?P=indent)(?P<inner>[ ]+)name: [^\n]*\n"
    r"(?P=indent)(?P=inner)deployment: false(?:[ ]+#[^\n]*)?\n",
    re.MULTILINE,
)


class Drift(Exception):
    pass


def ghes(text):
    """deploy.yml's text → deploy-ghes.yml's."""

    def strip(match):
        block = match.group(0)
        return block[: block.rindex(match.group("indent") + match.group("inner") + "deployment:")]

    out, count = BLOCK.subn(strip, text)
    if count == 0:
        raise Drift("deploy.yml has no `environment:` with `deployment: false` left: is this script still needed?")
    left = [
        f"deploy.yml line {text[: m.start()].count(chr(10)) + 1}"
        for m in re.finditer(r"^[ ]+deployment:", out, re.MULTILINE)
    ]
    if left:
        raise Drift(
            "a `deployment:` key in a form this script does not know ("
            + ", ".join(left)
            + "): write it as `environment:`, `name:`, `deployment: false`, each on its own line"
        )
    out = out.replace("/.github/workflows/deploy.yml@", "/.github/workflows/deploy-ghes.yml@")
    out = re.sub(
        r"^name: (.*?)(\))?$",
        lambda m: f"name: {m.group(1)}, GHES)" if m.group(2) else f"name: {m.group(1)} (GHES)",
        out,
        count=1,
        flags=re.MULTILINE,
    )
    return HEADER + out


def main(argv):
    check = argv[1:] == ["--check"]
    if argv[1:] not in ([], ["--check"]):
        print("usage: scripts/ghes-workflow.py [--check]", file=sys.stderr)
        return 2
    try:
        wanted = ghes(SOURCE.read_text())
    except Drift as e:
        print(f"ghes-workflow: {e}", file=sys.stderr)
        return 1
    if not check:
        OUT.write_text(wanted)
        print(f"wrote {OUT.relative_to(ROOT)}")
        return 0
    have = OUT.read_text() if OUT.exists() else ""
    if have == wanted:
        print(f"{OUT.relative_to(ROOT)} is up to date")
        return 0
    diff = difflib.unified_diff(
        have.splitlines(keepends=True),
        wanted.splitlines(keepends=True),
        fromfile=str(OUT.relative_to(ROOT)),
        tofile="generated from deploy.yml",
        n=1,
    )
    sys.stderr.write("".join(list(diff)[:40]))
    print(
        f"ghes-workflow: {OUT.relative_to(ROOT)} is out of date: run `python3 scripts/ghes-workflow.py`",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
