#!/usr/bin/env python3
"""The test's $EDITOR for the README's `$EDITOR inventory/office/...` line.

Does what the admin does by hand: in each file it is given, puts the
scenario's values in place of the example's placeholders, in the YAML and
not in the comments. The placeholders and their values come as a JSON
object in QUBEMAIL_TEST_PLACEHOLDERS (tests/readme.py). A placeholder found
in none of the files is an error: the example changed, and so must the test.
"""

import json
import os
import pathlib
import re
import sys


def split_comment(line):
    """(code, comment) of a YAML line: the comment starts at a `#` at the
    line's start or after a blank, outside quotes."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i], line[i:]
    return line, ""


def main(paths):
    values = json.loads(os.environ["QUBEMAIL_TEST_PLACEHOLDERS"])
    # Longest first: mail.example.com is one placeholder, not example.com in a name.
    pattern = re.compile("|".join(re.escape(p) for p in sorted(values, key=len, reverse=True)))
    found = set()

    def replace(match):
        found.add(match.group(0))
        return values[match.group(0)]

    for path in map(pathlib.Path, paths):
        lines = []
        for line in path.read_text().splitlines(keepends=True):
            body = line.rstrip("\n")
            code, comment = split_comment(body)
            lines.append(pattern.sub(replace, code) + comment + line[len(body):])
        path.write_text("".join(lines))
        print(f"edited {path}")
    missing = sorted(set(values) - found)
    if missing:
        print(f"placeholders in none of the files: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
