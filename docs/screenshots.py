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
    "gallery/gated_experts.html": ("gallery_gated_experts.png", 9000),
}
#: pages taller than this are also cut into parts of this height (…_part1.png, …)
PART = 1800


def chromium() -> str:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    raise SystemExit("no Chromium found: apt-get install chromium (or set CHROMIUM=...)")


def shoot(browser: str, url: str, png: Path, height: int, width: int = 1280) -> None:
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
                url,
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )


def rendered(browser: str, page: Path) -> dict[str, int]:
    """What the page's scripts produced: copy buttons, typeset math, figures."""
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [
                browser,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=15000",
                "--dump-dom",
                page.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    return {
        "copy buttons": dom.count('class="copybtn'),
        "typeset math": dom.count('class="MathJax') + dom.count("<mjx-container"),
        "raw TeX left": dom.count("\\("),
        "images": dom.count("<img"),
    }


def cut(png: Path) -> list[Path]:
    """A tall screenshot cut into parts of PART pixels (blank parts dropped)."""
    import numpy as np
    from PIL import Image

    image = Image.open(png)
    parts = []
    for i, top in enumerate(range(0, image.height, PART), 1):
        piece = image.crop((0, top, image.width, min(top + PART, image.height)))
        if np.asarray(piece.convert("L")).std() < 1:  # nothing but background
            continue
        path = png.with_name(f"{png.stem}_part{i}.png")
        piece.save(path)
        parts.append(path)
    return parts


def main(argv: list[str]) -> int:
    html = Path(argv[0] if argv else "docs/_build/html")
    out = Path(argv[1] if len(argv) > 1 else "docs/_build/screenshots")
    out.mkdir(parents=True, exist_ok=True)
    browser = chromium()
    for page, (name, height) in PAGES.items():
        if not (html / page).is_file():
            raise SystemExit(f"{html / page} does not exist: build the site first (make docs)")
        shoot(browser, (html / page).resolve().as_uri(), out / name, height)
        counts = ", ".join(f"{k} {v}" for k, v in rendered(browser, html / page).items())
        print(f"{out / name}: {counts}")
        if height > PART:
            for part in cut(out / name):
                print(f"  {part}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
