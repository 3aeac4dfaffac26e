"""The option tables of docs/configuration.md, generated from the code (written once).

``.. kitsession-options::`` lists every :class:`~kitsession_wsgi.SessionManager` option:
its name and default come from the manager's signature, its meaning from the ``:param:``
fields of the manager's docstring (the one the API reference renders), and its Flask
config key from what :class:`~kitsession_wsgi.flask.KitSession` accepts.  An option
without a ``:param:`` entry fails the build.

``.. kitsession-extension-options::`` lists the options of the Flask extension itself
(not passed to the manager).  Its content is one ``name: meaning`` paragraph per option
(reStructuredText, as the docstrings are),
and the build fails unless those names are exactly the options ``KitSession`` accepts
beyond the manager's, so a new extension option cannot go undocumented.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from docutils import nodes
from docutils.parsers.rst import Parser as RSTParser
from docutils.utils import new_document
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

_PARAM = re.compile(r"^:param ([^:]+):(.*)$")


def manager_parameters() -> list[inspect.Parameter]:
    """The manager's options, in signature order (the ``store`` argument left out)."""
    from kitsession_wsgi import SessionManager

    parameters = inspect.signature(SessionManager).parameters.values()
    return [p for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]


def documented_parameters(docstring: str) -> dict[str, str]:
    """``:param a, b: text`` fields of a docstring, by name (continuation lines joined).

    A field that documents several names at once is shown under each, naming the group.
    """
    fields: dict[str, str] = {}
    groups: dict[str, list[str]] = {}
    names: list[str] = []
    for line in inspect.cleandoc(docstring).splitlines():
        match = _PARAM.match(line)
        if match:
            names = [name.strip() for name in match.group(1).split(",")]
            for name in names:
                fields[name] = match.group(2).strip()
                groups[name] = names
        elif names and line.startswith(" ") and line.strip():
            for name in names:
                fields[name] += " " + line.strip()
        else:
            names = []
    for name, group in groups.items():
        if len(group) > 1:
            together = ", ".join(f"``{other}``" for other in group)
            fields[name] = f"(documented together with {together}) {fields[name]}"
    return fields


def extension_options() -> list[str]:
    """Every option ``KitSession(...)`` accepts, as its own error message lists them."""
    from kitsession_wsgi import ConfigurationError
    from kitsession_wsgi.flask import KitSession

    try:
        KitSession(None, _kitsession_docs_probe=True)
    except ConfigurationError as error:
        known = re.search(r"\(known: ([^)]*)\)", str(error))
        if known:
            return [name.strip() for name in known.group(1).split(",")]
    raise RuntimeError("KitSession no longer names its known options in its error message")


def show_default(value: Any) -> str:
    if value is inspect.Parameter.empty:
        return "(required)"
    if callable(value):
        module = getattr(value, "__module__", None) or "time"
        return f"``{module}.{value.__qualname__}``"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 86400 and value % 86400 == 0:
        return f"``{value}`` ({value // 86400} days)"
    return f"``{value!r}``"


def _qualified(text: str) -> str:
    """A field's text for this page.

    A docstring's ``:meth:`regenerate``` names the manager's method, which this page must
    say; a field's inline ````.. versionadded:: 0.2```` reads as a sentence.
    """
    text = re.sub(r":(meth|attr):`(~?)([a-z_]+)`", r":\1:`~kitsession_wsgi.SessionManager.\3`", text)
    return re.sub(r"``\.\. versionadded:: ([\d.]+)``", r"*Added in version \1.*", text)


class OptionsDirective(SphinxDirective):
    """The manager's options, each a ``confval`` (name, default, Flask key, meaning)."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        from kitsession_wsgi import SessionManager

        meanings = {name: _qualified(text) for name, text in documented_parameters(SessionManager.__doc__ or "").items()}
        accepted = set(extension_options())
        text: list[str] = []
        for parameter in manager_parameters():
            name = parameter.name
            if name not in meanings:
                raise self.error(f"SessionManager option {name!r} has no :param: entry in its docstring")
            key = f"``KITSESSION_{name.upper()}``" if name in accepted else "none (a constructor argument only)"
            text += [f".. confval:: {name}", f"   :default: {show_default(parameter.default)}", "",
                     f"   {meanings[name]}", "", f"   Flask config key: {key}.", ""]
        return self._parse(text)

    def _parse(self, text: list[str]) -> list[nodes.Node]:
        # reStructuredText whatever the page's own markup (the docstrings' fields are RST).
        document = new_document("kitsession-options", self.state.document.settings)
        RSTParser().parse("\n".join(text), document)
        return list(document.children)


class ExtensionOptionsDirective(OptionsDirective):
    """The Flask extension's own options; content: ``name: meaning`` paragraphs."""

    has_content = True

    def run(self) -> list[nodes.Node]:
        manager_options = {p.name for p in manager_parameters()}
        own = [name for name in extension_options() if name not in manager_options]
        given: dict[str, str] = {}
        current = None
        for line in self.content:
            match = re.match(r"^([a-z_]+): (.*)$", line)
            if match:
                current = match.group(1)
                given[current] = match.group(2)
            elif current and line.strip():
                given[current] += " " + line.strip()
        if sorted(given) != sorted(own):
            raise self.error(f"KitSession's own options are {sorted(own)}, the page documents {sorted(given)}")
        text: list[str] = []
        for name in own:
            text += [f".. confval:: {name}", "", f"   {given[name]}", "",
                     f"   Flask config key: ``KITSESSION_{name.upper()}``.", ""]
        return self._parse(text)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("kitsession-options", OptionsDirective)
    app.add_directive("kitsession-extension-options", ExtensionOptionsDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
