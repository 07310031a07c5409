"""Write README's generated tables from the committed results (cocos_lib.report.results).

    python tools/readme_tables.py           # rewrite every `<!-- table:NAME -->...<!-- /table:NAME -->` block
    python tools/readme_tables.py --check   # exit 1 and name the table when README differs

Each block's body is cocos_lib.report.results.readme_tables()[NAME], so README shows exactly what the
notebooks compute from the same files.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cocos_lib.report.results import readme_tables  # noqa: E402  (the repo root on sys.path first)

BLOCK = re.compile(r"(<!-- table:(?P<name>[\w-]+) -->\n)(?P<body>(?:.*?\n)?)(<!-- /table:(?P=name) -->)", re.S)


def render(text: str, tables: dict[str, str]) -> str:
    """text with every marked block's body replaced; an unknown table name is an error."""
    def fill(m: re.Match) -> str:
        if m["name"] not in tables:
            raise KeyError(f"README: table '{m['name']}' has no generator (known: {', '.join(tables)})")
        return m.group(1) + tables[m["name"]] + "\n" + m.group(4)
    return BLOCK.sub(fill, text)


def stale(text: str, tables: dict[str, str]) -> list[str]:
    """Names of the marked tables whose README body differs from the generated one."""
    return [m["name"] for m in BLOCK.finditer(text) if tables.get(m["name"]) != m["body"][:-1]]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = ap.parse_args(argv)
    text, tables = args.readme.read_text(encoding="utf-8"), readme_tables()
    if args.check:
        bad = stale(text, tables)
        if bad:
            print(f"README.md: generated tables out of date: {', '.join(bad)} (run python tools/readme_tables.py)")
            return 1
        print(f"README.md: {len(list(BLOCK.finditer(text)))} generated tables up to date")
        return 0
    args.readme.write_text(render(text, tables), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
