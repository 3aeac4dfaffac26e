"""Check that a built ``objects.inv`` documents every public name.

Usage: ``python docs/check_inventory.py docs/_build/html/objects.inv`` (``make docs`` runs it).
Exits 1 and lists what is missing: every name in ``kitsession_wsgi.__all__``,
``KitSession``, ``SessionMiddleware``, each store class, ``StoreContract`` and every
signal in ``kitsession_wsgi.signals``.
"""

from __future__ import annotations

import sys
from pathlib import Path


def required_names() -> list[str]:
    import blinker

    import kitsession_wsgi
    from kitsession_wsgi import signals

    names = [f"kitsession_wsgi.{name}" for name in kitsession_wsgi.__all__]
    names += [
        "kitsession_wsgi.flask.KitSession",
        "kitsession_wsgi.wsgi.SessionMiddleware",
        "kitsession_wsgi.stores.peewee.PeeweeStore",
        "kitsession_wsgi.stores.memcached.MemcachedStore",
        "kitsession_wsgi.stores.redis.RedisStore",
        "kitsession_wsgi.stores.urls.store_from_url",
        "kitsession_wsgi.testing.StoreContract",
    ]
    names += [f"kitsession_wsgi.signals.{name}" for name, value in vars(signals).items()
              if isinstance(value, blinker.NamedSignal) and not name.startswith("_")]
    return names


def documented_names(inventory: Path) -> set[str]:
    from sphinx.util.inventory import InventoryFile

    with inventory.open("rb") as stream:
        data = InventoryFile.load(stream, "", lambda uri, target: uri + target)
    items = data.data if hasattr(data, "data") else data  # a _Inventory (Sphinx >= 8.2) or a dict
    return {name for kind, entries in items.items() if kind.startswith("py:") for name in entries}


def missing(inventory: Path) -> list[str]:
    documented = documented_names(inventory)
    return [name for name in required_names() if name not in documented]


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    absent = missing(Path(sys.argv[1]))
    if absent:
        print("objects.inv lacks:", ", ".join(absent))
        sys.exit(1)
    print(f"objects.inv documents all {len(required_names())} public names")
