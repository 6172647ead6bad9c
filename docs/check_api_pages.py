"""Check a built site: every public name of the API modules has its own page.

Usage: ``python docs/check_api_pages.py docs/_build/html`` (``make docs`` runs it).
Exits 1 naming the missing pages.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def missing_pages(html: Path) -> list[str]:
    from api_pages import API_MODULES, api_names

    missing = []
    for module in API_MODULES:
        for name in api_names(module):
            page = html / "api" / "generated" / f"{module}.{name}.html"
            if not page.is_file():
                missing.append(f"{module}.{name}")
    return missing


if __name__ == "__main__":
    html = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/_build/html")
    missing = missing_pages(html)
    if missing:
        print(f"no API page for: {', '.join(missing)}")
        sys.exit(1)
    print(f"every public name has its API page ({html / 'api' / 'generated'})")
