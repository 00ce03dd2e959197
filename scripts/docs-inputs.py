#!/usr/bin/env python3
"""Writes docs/inputs.md from action.yml: every input (required, default, description) and every
output, in action.yml's order, as Markdown tables.

    python3 scripts/docs-inputs.py          # write docs/inputs.md
    python3 scripts/docs-inputs.py --check  # exit 1, naming the drift, when it is out of date

Standard library only. action.yml is read with a small reader for the part of YAML it uses: the
top-level `inputs:` and `outputs:` maps, two-space indented names, four-space indented keys
whose values are plain scalars, quoted scalars or `>-`/`>`/`|`/`|-` blocks. Anything else in
those two maps is an error naming its line, so the reader cannot silently misread a new form.
"""

import difflib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ACTION = ROOT / "action.yml"
OUT = ROOT / "docs" / "inputs.md"


class ActionError(Exception):
    pass


def scalar(text, where):
    """A one-line scalar: plain, "double-quoted" or 'single-quoted'."""
    text = text.strip()
    if text.startswith('"'):
        if len(text) < 2 or not text.endswith('"'):
            raise ActionError(f"{where}: unterminated double-quoted value")
        body = text[1:-1]
        escapes = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "/": "/"}
        out, i = [], 0
        while i < len(body):
            if body[i] == "\\":
                if i + 1 >= len(body) or body[i + 1] not in escapes:
                    raise ActionError(f"{where}: escape this reader does not know")
                out.append(escapes[body[i + 1]])
                i += 2
            else:
                out.append(body[i])
                i += 1
        return "".join(out)
    if text.startswith("'"):
        if len(text) < 2 or not text.endswith("'"):
            raise ActionError(f"{where}: unterminated single-quoted value")
        return text[1:-1].replace("''", "'")
    if text.startswith(("&", "*", "!", "[", "{", "|", ">", "@", "`")):
        raise ActionError(f"{where}: value form this reader does not know: {text!r}")
    # A comment after a plain scalar.
    return re.sub(r"\s+#.*$", "", text)


def block(style, lines, where):
    """A `>`/`|` block scalar whose lines (already without their indentation) are `lines`."""
    while lines and lines[-1] == "":
        lines = lines[:-1]
    if style.startswith("|"):
        text = "\n".join(lines)
    else:
        # Folded: a line break between two text lines becomes a space, an empty line a newline.
        text, pending = "", ""
        for line in lines:
            if line == "":
                pending += "\n"
                continue
            if text:
                text += pending if pending else " "
            text += line
            pending = ""
    if style in (">-", "|-"):
        return text
    if style in (">", "|"):
        return text + "\n"
    raise ActionError(f"{where}: block style {style!r} this reader does not know")


def read_action(path):
    """{"inputs": [(name, {key: value})], "outputs": [...]}, in file order."""
    lines = path.read_text(encoding="utf-8").split("\n")
    maps = {"inputs": [], "outputs": []}
    current = None  # the list of the map being read
    entry = None  # the dict of the entry being read
    i = 0
    while i < len(lines):
        line, where = lines[i], f"{path.name}:{i + 1}"
        i += 1
        if line.strip() == "" or line.lstrip().startswith("#"):
            continue
        if not line.startswith(" "):
            name = line.split(":", 1)[0]
            current = maps.get(name) if line.rstrip() == f"{name}:" else None
            entry = None
            continue
        if current is None:
            continue
        m = re.fullmatch(r"  ([A-Za-z0-9_-]+):\s*", line)
        if m:
            entry = {}
            current.append((m.group(1), entry))
            continue
        m = re.fullmatch(r"    ([a-z-]+):(.*)", line)
        if not m or entry is None:
            raise ActionError(f"{where}: line this reader does not know: {line!r}")
        key, rest = m.group(1), m.group(2).strip()
        if key in entry:
            raise ActionError(f"{where}: `{key}` given twice")
        if rest in (">", ">-", "|", "|-"):
            body = []
            while i < len(lines) and (lines[i].startswith("      ") or lines[i].strip() == ""):
                body.append(lines[i][6:] if lines[i].strip() else "")
                i += 1
            entry[key] = block(rest, body, where)
        else:
            entry[key] = scalar(rest, where)
    for name in maps:
        if not maps[name]:
            raise ActionError(f"{path.name}: no `{name}:` found")
        for entry_name, entry in maps[name]:
            if "description" not in entry:
                raise ActionError(f"{path.name}: {name[:-1]} `{entry_name}` has no description")
    return maps


def cell(text):
    text = text.strip().replace("|", "\\|")
    return "<br>".join(line.strip() for line in text.split("\n"))


def code(text):
    return f"`{text}`" if text else ""


def render(maps):
    out = [
        "# Action inputs and outputs",
        "",
        "Every input and output of the action, in `action.yml`'s order, with its description as",
        "`action.yml` states it. Generated by `python3 scripts/docs-inputs.py` from",
        "[`action.yml`](../action.yml): edit that file, then run the script (CI checks with",
        "`--check`). Each command's page in [`commands/`](commands/) says which inputs it reads,",
        "with their flags and `shipgate.yml` keys. Every input except `command` reaches the CLI as the",
        "runner's `INPUT_<NAME>` variable; empty inputs count as unset.",
        "",
        "## Inputs",
        "",
        "| input | required | default | description |",
        "| --- | --- | --- | --- |",
    ]
    for name, entry in maps["inputs"]:
        required = {"true": "yes", "false": "no"}.get(entry.get("required", "false"))
        if required is None:
            raise ActionError(f"input `{name}`: required is neither true nor false")
        default = cell(entry.get("default", ""))
        out.append(
            f"| `{name}` | {required} | {code(default)} | {cell(entry['description'])} |"
        )
    out += ["", "## Outputs", "", "| output | description |", "| --- | --- |"]
    for name, entry in maps["outputs"]:
        out.append(f"| `{name}` | {cell(entry['description'])} |")
    return "\n".join(out) + "\n"


def rows(text):
    """{(section, name): row} of a generated page, to name what drifted."""
    found, section = {}, ""
    for line in text.split("\n"):
        if line.startswith("## "):
            section = line[3:].strip().lower()
        m = re.match(r"\| `([^`]+)` \|", line)
        if m:
            found[(section, m.group(1))] = line
    return found


def drift(old, new):
    """What differs between the committed page and the one action.yml gives, in words."""
    before, after = rows(old), rows(new)
    said = []
    for (section, name) in after:
        if (section, name) not in before:
            said.append(f"{section[:-1]} `{name}` is in action.yml but not in docs/inputs.md")
        elif before[(section, name)] != after[(section, name)]:
            said.append(f"{section[:-1]} `{name}` differs from action.yml")
    for (section, name) in before:
        if (section, name) not in after:
            said.append(f"{section[:-1]} `{name}` is in docs/inputs.md but not in action.yml")
    if not said:
        said.append("the text around the tables (or their order) differs")
    return said


def main(argv):
    if argv not in ([], ["--check"]):
        print("usage: docs-inputs.py [--check]", file=sys.stderr)
        return 2
    try:
        page = render(read_action(ACTION))
    except ActionError as e:
        print(f"docs-inputs: {e}", file=sys.stderr)
        return 2
    if argv == ["--check"]:
        current = OUT.read_text(encoding="utf-8") if OUT.exists() else ""
        if current == page:
            return 0
        print(
            "docs/inputs.md is not what action.yml gives; "
            "run `python3 scripts/docs-inputs.py` and commit it:",
            file=sys.stderr,
        )
        for line in drift(current, page) if current else ["docs/inputs.md is missing"]:
            print(f"  - {line}", file=sys.stderr)
        diff = list(
            difflib.unified_diff(
                current.splitlines(),
                page.splitlines(),
                "docs/inputs.md (committed)",
                "docs/inputs.md (from action.yml)",
                lineterm="",
                n=0,
            )
        )
        for line in diff[:40]:
            print(line, file=sys.stderr)
        if len(diff) > 40:
            print(f"  … {len(diff) - 40} more diff lines", file=sys.stderr)
        return 1
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(page, encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}: {page.count(chr(10))} lines", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
