"""The documentation site builds with warnings as errors and documents every public name.

The same build as ``make docs`` (Sphinx, offline, ``-W --keep-going``) into a temporary
directory; then the inventory it writes (``objects.inv``, what other projects' intersphinx
reads) must list every name of ``kitsession_wsgi.__all__``, ``KitSession``,
``SessionMiddleware``, each store class, ``StoreContract`` and every signal.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("check_inventory", ROOT / "docs" / "check_inventory.py")
assert _spec is not None and _spec.loader is not None
check_inventory = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_inventory)


def test_the_docs_build_without_a_warning_and_list_every_public_name(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-E", "-q",
         str(ROOT / "docs"), str(tmp_path / "html")],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert check_inventory.missing(tmp_path / "html" / "objects.inv") == []

    # The configuration page is generated from the code: every option of the manager and of
    # the Flask extension has its entry, with its Flask config key.
    import inspect

    from kitsession_wsgi import SessionManager

    page = (tmp_path / "html" / "configuration.html").read_text(encoding="utf-8")
    options = [name for name in inspect.signature(SessionManager).parameters if name != "store"]
    options += ["store", "retry_after", "permanent"]
    for name in options:
        assert f'id="confval-{name}"' in page, name
    for name in options:
        if name not in ("serializer",):
            assert f"KITSESSION_{name.upper()}" in page, name


def test_the_inventory_check_names_what_is_missing(tmp_path: Path) -> None:
    """The check can fail: an inventory without the stores lacks exactly them."""
    names = [name for name in check_inventory.required_names() if ".stores." not in name]
    lines = ["# Sphinx inventory version 2", "# Project: t", "# Version: 0",
             "# The remainder of this file is compressed using zlib."]
    body = "".join(f"{name} py:class 1 api.html#$ -\n" for name in names).encode()
    (tmp_path / "objects.inv").write_bytes(("\n".join(lines) + "\n").encode() + zlib.compress(body))
    assert sorted(check_inventory.missing(tmp_path / "objects.inv")) == sorted(
        name for name in check_inventory.required_names() if ".stores." in name)
