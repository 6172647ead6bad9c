"""Screenshots of the built documentation site, as a user sees it.

Renders the index, one user-guide page, one API page and one gallery page of the built
HTML with headless Chromium (Debian's ``chromium`` package; ``CHROMIUM=...`` names
another binary) into PNG files, after the page's scripts ran (MathJax typesets the math,
sphinx-copybutton adds its buttons). ``make docs-screenshots`` builds the site first.

Usage: ``python docs/screenshots.py [HTML_DIR] [OUT_DIR]`` (defaults
``docs/_build/html`` and ``docs/_build/screenshots``). Prints the files it wrote.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: page -> (file name, window height in pixels)
PAGES = {
    "index.html": ("index.png", 1100),
    "user_guide/gated_experts.html": ("user_guide_gated_experts.png", 1400),
    "api/generated/bayesmoe.conditional_effects.html": ("api_conditional_effects.png", 1400),
    "api/bayesmoe.html": ("api_bayesmoe.png", 1600),
    "gallery/gated_experts.html": ("gallery_gated_experts.png", 4200),
}


def chromium() -> str:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    raise SystemExit("no Chromium found: apt-get install chromium (or set CHROMIUM=...)")


def shoot(browser: str, page: Path, png: Path, height: int, width: int = 1280) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                browser,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=15000",  # let MathJax and the theme's scripts run
                f"--window-size={width},{height}",
                f"--screenshot={png}",
                page.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )


def main(argv: list[str]) -> int:
    html = Path(argv[0] if argv else "docs/_build/html")
    out = Path(argv[1] if len(argv) > 1 else "docs/_build/screenshots")
    out.mkdir(parents=True, exist_ok=True)
    browser = chromium()
    for page, (name, height) in PAGES.items():
        if not (html / page).is_file():
            raise SystemExit(f"{html / page} does not exist: build the site first (make docs)")
        shoot(browser, html / page, out / name, height)
        print(out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
