"""Sphinx configuration for the kitsession-wsgi documentation.

Built offline (no intersphinx): ``make docs`` runs ``sphinx-build -W --keep-going``, so
every warning fails the build.  Pages are Markdown (MyST) except the design document and
the API reference; every ``python`` block in them is executed by ``tests/test_docs.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE / "_ext"))

import kitsession_wsgi  # noqa: E402

project = "kitsession-wsgi"
author = "kitsession-wsgi contributors"
copyright = "2026, kitsession-wsgi contributors"
release = kitsession_wsgi.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "myst_parser",
    "kitsession_options",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_typehints_description_target = "documented_params"
autodoc_preserve_defaults = True
autodoc_default_options = {"members": True, "show-inheritance": True}

# Third-party and standard types named in signatures: no inventory offline, so no link.
nitpicky = False

html_theme = "furo"
html_title = f"kitsession-wsgi {release}"
html_static_path: list[str] = []
