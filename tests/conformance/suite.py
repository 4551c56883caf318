"""Dramatiq's own test modules, taken from the installed Dramatiq version's sdist at test time.

The sdist is downloaded once per Dramatiq version (``pip download dramatiq==VERSION --no-binary
:all: --no-deps``) into ``.pytest_cache/dramatiq-sdist/VERSION/`` and only the test modules asked
for are extracted; nothing of it is committed. The modules are imported as the package
:data:`PACKAGE`, whose ``common`` (the helpers Dramatiq's tests import, ``from .common import
worker``, missing from the sdist) is ours: :mod:`conformance.dramatiq_common`.

When the sdist cannot be had (offline, PyPI down) the test module asking for it is skipped with
pip's last line as the reason.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tarfile
import tempfile
import types
from pathlib import Path
from typing import Any, NoReturn

import dramatiq
import pytest

from . import dramatiq_common

ROOT = Path(__file__).resolve().parents[2]
#: Where the sdist and its extracted test modules are kept, per Dramatiq version.
CACHE = Path(os.environ.get("AURY_CONFORMANCE_CACHE", ROOT / ".pytest_cache" / "dramatiq-sdist"))
#: The package Dramatiq's test modules are imported as.
PACKAGE = "dramatiq_suite"
#: Seconds ``pip download`` may take (it builds the sdist's metadata in an isolated environment).
DOWNLOAD_TIMEOUT = 180


#: Why the sdist could not be had, once a download failed in this process (not tried again).
_unavailable: list[str] = []


def load(name: str) -> types.ModuleType:
    """Dramatiq's ``tests/NAME.py`` of the installed version, imported (or the caller skipped)."""
    if _unavailable:
        pytest.skip(_unavailable[0], allow_module_level=True)
    tests_dir = _extracted(dramatiq.__version__)
    package = sys.modules.get(PACKAGE)
    if package is None:
        package = types.ModuleType(PACKAGE)
        package.__path__ = [str(tests_dir)]
        sys.modules[PACKAGE] = package
        sys.modules[f"{PACKAGE}.common"] = dramatiq_common
    return importlib.import_module(f"{PACKAGE}.{name}")


def functions_of(module: types.ModuleType) -> dict[str, Any]:
    """The test functions of ``module``, to put in a test module of ours (so pytest collects them
    there, with the fixtures of ``tests/conformance/conftest.py``)."""
    return {
        name: value for name, value in vars(module).items() if name.startswith("test_") and callable(value)
    }


def _extracted(version: str) -> Path:
    """The directory holding the sdist's ``test_redis.py`` and ``test_actors.py``, made if needed."""
    target = CACHE / version / "tests"
    if (target / "test_redis.py").exists() and (target / "test_actors.py").exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as scratch:
        sdist = _download(version, Path(scratch))
        staged = Path(scratch) / "tests"
        staged.mkdir()
        prefix = f"dramatiq-{version}/tests/"
        with tarfile.open(sdist) as archive:
            for wanted in ("test_redis.py", "test_actors.py"):
                member = archive.getmember(prefix + wanted)
                source = archive.extractfile(member)
                assert source is not None, f"{member.name} is not a file in {sdist.name}"
                (staged / wanted).write_bytes(source.read())
        (CACHE / version).mkdir(exist_ok=True)
        try:
            staged.rename(target)
        except OSError:  # another run extracted it meanwhile
            if not (target / "test_actors.py").exists():
                raise
    return target


def _download(version: str, directory: Path) -> Path:
    """Dramatiq's sdist of ``version`` downloaded into ``directory`` (or the caller skipped)."""
    command = [sys.executable, "-m", "pip", "download", f"dramatiq=={version}", "--no-binary", ":all:",
               "--no-deps", "--disable-pip-version-check", "-d", str(directory)]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT)
    except subprocess.TimeoutExpired:
        _skip(f"pip download dramatiq=={version} took over {DOWNLOAD_TIMEOUT} s (offline?)")
    found = sorted(directory.glob(f"dramatiq-{version}.tar.gz"))
    if done.returncode != 0 or not found:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
        _skip(f"pip download dramatiq=={version} failed (offline?): {lines[-1]}")
    return found[0]


def _skip(reason: str) -> NoReturn:
    """Skip the test module asking, and every later one of this process, for ``reason``."""
    _unavailable.append(reason)
    pytest.skip(reason, allow_module_level=True)
