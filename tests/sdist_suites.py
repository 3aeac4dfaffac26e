"""Other projects' test suites, run from the sdist of the installed version, with and without KitSession.

The sdist is downloaded at test time with ``pip download <name>==<version> --no-binary :all:
--no-deps`` into a cache directory (``KITSESSION_SDIST_CACHE``, default
``~/.cache/kitsession-wsgi/sdists``), never copied into this repository.  Each suite runs in a
subprocess with the plugin ``tests/flask_suite/kitsession_flask_plugin.py`` loaded: once as the
baseline (``KITSESSION_FLASK_SUITE=baseline``, the plugin installs nothing) and once with
KitSession on every Flask app the suite creates, so a failure that comes from the environment is
told apart from one that comes from KitSession.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from servers import service_missing

PLUGIN_DIR = Path(__file__).resolve().parent / "flask_suite"
#: The checkout under test: first on the subprocess's path, so it imports this kitsession_wsgi
#: (not whichever one is installed; the suite runs from the unpacked sdist's folder).
REPOSITORY = PLUGIN_DIR.parent.parent


@dataclasses.dataclass(frozen=True)
class SuiteRun:
    """One pytest run over a suite: failed ids (``module::name``), tests run, apps given KitSession."""

    failed: set[str]
    total: int
    apps_with_kitsession: int


def unpacked_sdist(distribution: str, tmp_path: Path, cache_env: str = "KITSESSION_SDIST_CACHE",
                   cache_name: str = "sdists") -> Path:
    """The root of the unpacked sdist of the installed ``distribution`` (the folder holding ``tests/``).

    ``cache_env`` names the environment variable that may give the cache directory, else
    ``~/.cache/kitsession-wsgi/<cache_name>``.
    """
    version = importlib.metadata.version(distribution)
    cache = Path(os.environ.get(cache_env) or Path.home() / ".cache" / "kitsession-wsgi" / cache_name)
    cache.mkdir(parents=True, exist_ok=True)
    wanted = f"{distribution}-{version}.tar.gz".lower().replace("_", "-")

    def found() -> list[Path]:
        return sorted(p for p in cache.iterdir() if p.name.lower().replace("_", "-") == wanted)

    if not found():
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", f"{distribution}=={version}", "--no-binary", ":all:",
             "--no-deps", "-d", str(cache)],
            capture_output=True, text=True, timeout=300,
        )
        if result.returncode != 0 or not found():
            service_missing(f"cannot download the {distribution} {version} sdist: {result.stderr[-500:]}")
    with tarfile.open(found()[0]) as archive:
        archive.extractall(tmp_path, filter="data")
    (root,) = [p for p in tmp_path.iterdir() if p.is_dir() and (p / "tests").is_dir()]
    return root


def run_suite(root: Path, mode: str, tmp_path: Path) -> SuiteRun:
    """Run ``root/tests`` with the plugin in ``mode`` (``baseline`` or ``kitsession``)."""
    report = tmp_path / f"{mode}.xml"
    count_file = tmp_path / f"{mode}.apps"
    env = dict(os.environ, KITSESSION_FLASK_SUITE=mode, KITSESSION_FLASK_SUITE_COUNT=str(count_file),
               PYTHONPATH=os.pathsep.join([str(PLUGIN_DIR), str(REPOSITORY), os.environ.get("PYTHONPATH", "")]))
    env.pop("PYTEST_ADDOPTS", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "kitsession_flask_plugin",
         f"--junitxml={report}", "tests"],
        cwd=root, env=env, capture_output=True, text=True, timeout=600,
    )
    assert report.exists(), f"the {mode} run of {root.name}'s suite wrote no report: {result.stderr[-2000:]}"
    failed: set[str] = set()
    total = 0
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        total += 1
        if case.find("failure") is not None or case.find("error") is not None:
            name = case.get("name", "").split("[")[0]
            failed.add(f"{case.get('classname')}::{name}")
    apps = int(count_file.read_text(encoding="utf-8")) if count_file.exists() else 0
    return SuiteRun(failed, total, apps)
