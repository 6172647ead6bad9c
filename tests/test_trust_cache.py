"""A cache folder you can trust: only the user's, deletes only what it made, concurrent-safe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import pytest

from bayesmoe import cache
from tests.conftest import python_output
from tests.test_cache import FIT_SCRIPT

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX owners and modes")


def _fresh_env(root) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTENSOR_FLAGS", cache.CACHE_ENV)}
    env[cache.CACHE_ENV] = str(root)
    return env


@pytest.fixture
def no_warned(monkeypatch):
    """Each test sees the once-per-process warning again."""
    monkeypatch.setattr(cache, "_WARNED", set())


def test_clear_leaves_a_users_folder_under_the_cache_root(monkeypatch, tmp_path):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_text("x")
    cache.clear(all_versions=True)
    assert (photos / "a.jpg").read_text() == "x"


def test_clear_deletes_only_folders_the_cache_made(monkeypatch, tmp_path):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))
    mine = cache.usable_cache_dir()
    assert mine is not None and cache.is_marked(mine)
    (mine / "pytensor").mkdir()
    other_version = tmp_path / "v-0.0.1-000000000000"
    other_version.mkdir()
    (other_version / cache.MARKER).write_text("")
    photos = tmp_path / "photos"  # the user's own folder under the cache root
    photos.mkdir()
    (photos / "a.jpg").write_text("x")
    unmarked = tmp_path / "v-0.0.0-111111111111"  # not made (marked) by the cache
    unmarked.mkdir()
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    elsewhere.mkdir()
    (elsewhere / cache.MARKER).write_text("")
    (elsewhere / "keep").write_text("x")
    (tmp_path / "link").symlink_to(elsewhere, target_is_directory=True)

    assert cache.clear() == [mine]
    assert not mine.exists() and other_version.exists()
    mine = cache.usable_cache_dir()
    removed = cache.clear(all_versions=True)
    assert sorted(removed) == sorted([mine, other_version])
    assert (photos / "a.jpg").read_text() == "x"
    assert unmarked.is_dir() and (elsewhere / "keep").exists()


def test_the_cache_folders_are_private_and_marked(monkeypatch, tmp_path):
    root = tmp_path / "new" / "cache"
    monkeypatch.setenv(cache.CACHE_ENV, str(root))
    folder = cache.usable_cache_dir()
    assert folder == cache.cache_dir() and cache.is_marked(folder)
    if os.name == "posix":
        assert folder.stat().st_mode & 0o777 == 0o700
        assert root.stat().st_mode & 0o777 == 0o700


@posix_only
@pytest.mark.parametrize("where", ["root", "version"])
def test_a_cache_folder_writable_by_others_is_refused(monkeypatch, tmp_path, no_warned, where):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))
    folder = cache.usable_cache_dir()
    shared = tmp_path if where == "root" else folder
    shared.chmod(0o777 if where == "root" else 0o770)
    with pytest.warns(cache.CacheFolderWarning) as record:
        assert cache.usable_cache_dir() is None
    message = str(record[0].message)
    assert len(message.splitlines()) == 1
    assert repr(str(shared)) in message and "writable by other users" in message
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cache.configure_jax() is None  # JAX is not pointed at it either


@posix_only
def test_a_cache_folder_of_another_user_is_refused(monkeypatch, tmp_path, no_warned):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(tmp_path).st_uid + 1)
    with pytest.warns(cache.CacheFolderWarning, match="belongs to another user"):
        assert cache.usable_cache_dir() is None


@posix_only
def test_import_does_not_point_pytensor_at_a_shared_folder(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    code = (
        "import json, os, warnings\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    import bayesmoe\n"
        "print(json.dumps([os.environ.get('PYTENSOR_FLAGS', ''),\n"
        "                  [str(x.message) for x in w if 'cache' in str(x.message)]]))\n"
    )
    flags, messages = json.loads(python_output(code, _fresh_env(shared)).splitlines()[-1])
    assert str(shared) not in flags
    assert len(messages) == 1 and str(shared) in messages[0]
    assert not any(shared.iterdir())  # nothing was created in it
    # an owned, private folder is used
    private = tmp_path / "private"
    flags, messages = json.loads(python_output(code, _fresh_env(private)).splitlines()[-1])
    assert str(private) in flags and not messages


@pytest.mark.slow
def test_two_processes_filling_one_cache_at_once(tmp_path):
    """Two fits at once on one empty cache both succeed, with the draws of a fit alone."""
    env = _fresh_env(tmp_path / "shared")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", FIT_SCRIPT, "interaction"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    alone = subprocess.run(
        [sys.executable, "-c", FIT_SCRIPT, "interaction"],
        env=_fresh_env(tmp_path / "alone"),
        capture_output=True,
        text=True,
        check=True,
    )
    reference = json.loads(alone.stdout.strip().splitlines()[-1])
    assert results[0]["draws"] == results[1]["draws"] == reference["draws"]
    # and the shared cache serves a later process
    again = subprocess.run(
        [sys.executable, "-c", FIT_SCRIPT, "interaction"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    warm = json.loads(again.stdout.strip().splitlines()[-1])
    assert warm["hits"] == [1, 1] and warm["draws"] == reference["draws"]
