"""The README's code runs as written and prints what the README shows.

Every ```python block of README.md is executed, in order, in one namespace (in a temporary
folder, so the figures it saves land there); a ```text block that follows a python block is
the output that block prints, compared number by number (tolerance below) and word by
word. Every line of a ```bash block must name a command that exists: a Makefile target, a
``pip install`` of this repository, or a ``bayesmoe`` subcommand with options its parser
accepts (checked with the parser, nothing is fitted: the commands themselves are executed
by tests/test_examples.py and tests/test_cli_help.py).
"""

import contextlib
import io
import os
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```\n", re.S | re.M)
NUMBER = re.compile(r"-?\d+\.\d+|-?\d+")
#: The printed numbers come from MCMC with a fixed seed: bit-identical on one machine, but
#: another BLAS or CPU may change the last bits of the draws and so the rounded summary.
#: 2 % of the value plus 0.02 covers that (a posterior mean moving by more than its Monte
#: Carlo error, about sd / 60 here, fails).
RTOL, ATOL = 0.02, 0.02


def _blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(README.read_text())]


def test_readme_is_a_front_door():
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    prose = BLOCK.sub("", text).lower()  # code may name random_seed
    for word in ("seed", " bar", "issue ", "paired s.e.", "not met"):
        assert word not in prose, word  # measurement narratives live in docs/benchmarks
    for link in re.findall(r"\]\(((?!https?://)[^)#]+)\)", text):
        assert (ROOT / link).exists(), link


def _compare(printed: str, shown: str) -> None:
    got, want = printed.split(), shown.split()
    assert len(got) == len(want), f"printed\n{printed}\nREADME shows\n{shown}"
    for g, w in zip(got, want, strict=True):
        if NUMBER.fullmatch(w) and NUMBER.fullmatch(g):
            assert np.isclose(float(g), float(w), rtol=RTOL, atol=ATOL), (g, w)
        else:
            assert g == w


def test_readme_python_blocks_print_what_the_readme_shows(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    blocks = _blocks()
    namespace: dict = {"__name__": "__readme__"}
    ran = 0
    for i, (lang, code) in enumerate(blocks):
        if lang != "python":
            continue
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"README.md block {i}", "exec"), namespace)
        ran += 1
        following = blocks[i + 1] if i + 1 < len(blocks) else (None, "")
        if following[0] == "text":
            _compare(out.getvalue(), following[1])
    assert ran >= 2
    assert (tmp_path / "conditional.png").stat().st_size > 0


def _makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([\w-]+):", text, re.M))


def test_readme_shell_commands_exist():
    from bayesmoe.cli import build_parser

    parser = build_parser()
    targets = _makefile_targets()
    for lang, code in _blocks():
        if lang != "bash":
            continue
        for line in code.splitlines():
            command = line.split("#")[0].strip()
            if not command:
                continue
            words = shlex.split(command)
            if words[0] == "make":
                assert words[1] in targets, line
            elif words[0] == "pip":
                assert words[1] == "install", line
            elif words[0] == "bayesmoe":
                if words[1:] in (["--help"], ["--version"]):
                    continue
                args = parser.parse_args(words[1:])
                assert args.command in {"demo", "fit", "convergence"}, line
            else:
                pytest.fail(f"unknown command in the README: {line}")


def test_readme_figure_is_committed():
    path = ROOT / "docs" / "_static" / "quickstart_conditional.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(path) > 10_000
