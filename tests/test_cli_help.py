"""The ``bayesmoe`` command's help and version: defaults, choices, examples, plain text.

The parser is built and run in-process (``build_parser``); nothing is fitted.
"""

from __future__ import annotations

import argparse

import pytest

import bayesmoe
from bayesmoe.cli import METHODS, MODELS, SAMPLERS, build_parser, main

COMMANDS = ("demo", "fit", "convergence")


def _help(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == bayesmoe.__version__


def test_every_command_is_covered():
    assert set(_subparsers()) == set(COMMANDS)


def test_top_level_help_names_the_commands_and_has_examples(capsys):
    text = _help(capsys)
    for command in COMMANDS:
        assert command in text
    assert "--version" in text
    assert "examples:" in text


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_lists_defaults_and_examples(capsys, command):
    text = " ".join(_help(capsys, command).split())  # undo argparse's line wrapping
    assert "examples:" in text and f"bayesmoe {command}" in text
    for action in _subparsers()[command]._actions:
        if action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            continue
        option = max(action.option_strings, key=len)
        assert f"(default: {action.default})" in text, (command, option)


@pytest.mark.parametrize("command", ["demo", "fit"])
def test_method_and_sampler_list_their_choices(capsys, command):
    text = _help(capsys, command)
    assert "{" + ",".join(METHODS) + "}" in text
    assert "{" + ",".join(SAMPLERS) + "}" in text


def test_fit_help_lists_the_models(capsys):
    text = _help(capsys, "fit")
    assert ", ".join(MODELS) in text


@pytest.mark.parametrize("argv", [(), *((c,) for c in COMMANDS)])
def test_help_has_no_restructuredtext_markup(capsys, argv):
    assert "`" not in _help(capsys, *argv)


def test_choices_match_what_fit_accepts():
    from bayesmoe.inference import settings

    assert METHODS == settings.METHODS
    assert SAMPLERS == ("auto", *settings.SAMPLERS)


def test_an_unknown_method_is_refused_before_anything_runs(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--method", "gibbs"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'gibbs'" in capsys.readouterr().err
