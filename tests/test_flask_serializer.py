"""``app.session_interface.serializer`` is a tagged serializer with Flask's ``register()`` hook:
custom tagged types round-trip through every store (issue 14)."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, session
from flask.json.tag import JSONTag

from kitsession_wsgi.flask import KitSession, KitSessionInterface

from store_kinds import STORE_KINDS, open_store, store_servers  # noqa: F401 (fixture)


class Money:
    def __init__(self, cents: int, currency: str) -> None:
        self.cents = cents
        self.currency = currency

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Money) and (self.cents, self.currency) == (other.cents, other.currency)


class TagMoney(JSONTag):
    key = " money"

    def check(self, value: Any) -> bool:
        return isinstance(value, Money)

    def to_json(self, value: Any) -> Any:
        return [value.cents, value.currency]

    def to_python(self, value: Any) -> Any:
        return Money(value[0], value[1])


class TagOrderedDict(JSONTag):
    """The example of Flask's documentation (``flask.json.tag``)."""

    key = " od"

    def check(self, value: Any) -> bool:
        return isinstance(value, OrderedDict)

    def to_json(self, value: Any) -> Any:
        return [[k, self.serializer.tag(v)] for k, v in value.items()]

    def to_python(self, value: Any) -> Any:
        return OrderedDict(value)


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_custom_tags_round_trip_through_every_store(kind: str, tmp_path: Path, store_servers: Any) -> None:
    with open_store(kind, tmp_path, store_servers) as store:
        app = Flask(__name__)
        app.config["SECRET_KEY"] = "serializer-secret"
        KitSession(app, store=store)
        interface = app.session_interface
        assert isinstance(interface, KitSessionInterface)
        interface.serializer.register(TagMoney)
        interface.serializer.register(TagOrderedDict, index=0)
        seen: dict[str, Any] = {}

        @app.get("/write")
        def write() -> str:
            session["price"] = Money(1999, "EUR")
            session["order"] = OrderedDict([("b", 1), ("a", Money(5, "USD"))])
            session["plain"] = {"x": [1, 2]}
            return ""

        @app.get("/read")
        def read() -> str:
            seen.update(dict(session))
            return ""

        client = app.test_client()
        client.get("/write")
        client.get("/read")
        assert seen["price"] == Money(1999, "EUR")
        assert type(seen["order"]) is OrderedDict and list(seen["order"]) == ["b", "a"]
        assert seen["order"]["a"] == Money(5, "USD")
        assert seen["plain"] == {"x": [1, 2]}
        stored = [r.data for r in store.get_all()]
        assert any('" money"' in text for text in stored), stored


def test_register_refuses_a_taken_key_unless_forced() -> None:
    app = Flask(__name__)
    KitSession(app)
    serializer = app.session_interface.serializer  # type: ignore[attr-defined]
    serializer.register(TagMoney)
    with pytest.raises(KeyError):
        serializer.register(TagMoney)
    serializer.register(TagMoney, force=True)


def test_a_custom_tag_without_a_leading_space_still_loads() -> None:
    class TagBare(TagMoney):
        key = "money!"

    app = Flask(__name__)
    KitSession(app)
    serializer = app.session_interface.serializer  # type: ignore[attr-defined]
    serializer.register(TagBare)
    text = serializer.dumps({"m": Money(1, "EUR")})
    assert serializer.loads(text) == {"m": Money(1, "EUR")}


class _UnhashableClassMeta(type):
    """Makes its classes unhashable (``__eq__`` without ``__hash__``), as some ORMs' metaclasses do."""

    def __eq__(cls, other: object) -> bool:
        return cls is other

    __hash__ = None  # type: ignore[assignment]


class _HtmlOfUnhashableType(metaclass=_UnhashableClassMeta):
    def __html__(self) -> str:
        return "<b>x</b>"


def test_a_value_whose_type_cannot_be_hashed_is_still_tagged() -> None:
    """The plain-data walk compares types by identity and never hashes them: a value of an
    unhashable class is tagged like any other (here as Markup, through ``__html__``)."""
    from kitsession_wsgi.flask_serializer import FlaskSessionSerializer

    serializer = FlaskSessionSerializer()
    text = serializer.dumps({"a": {"m": _HtmlOfUnhashableType()}, "b": [_HtmlOfUnhashableType()]})
    loaded = serializer.loads(text)
    assert str(loaded["a"]["m"]) == "<b>x</b>" and type(loaded["a"]["m"]).__name__ == "Markup"
    assert str(loaded["b"][0]) == "<b>x</b>"
