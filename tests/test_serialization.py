"""``loads_json``, the read path's JSON parser: exactly ``json.loads``, value and error."""

from __future__ import annotations

import json

import pytest

from kitsession_wsgi.serialization import JSONSerializer, loads_json

SAME_AS_JSON_LOADS = {
    "stored object": '{"user_id":7,"cart":[1,2.5,null,true],"name":"Zoë"}',
    "empty object": "{}",
    "nested": '{"a":{"b":{"c":[{"d":"e"}]}}}',
    "escapes and surrogates": '{"s":"\\ud83d\\ude00 \\u00e9 \\n \\"q\\""}',
    "lone surrogate": '{"s":"\\ud800"}',
    "NaN and Infinity (json.loads accepts them)": '{"a":NaN,"b":-Infinity}',
    "big int": '{"n":123456789012345678901234567890}',
    "duplicate keys (last wins)": '{"a":1,"a":2}',
    "whitespace inside": '{ "a" : [ 1 , 2 ] }',
    "whitespace around": '  {"a":1}\n',
    "not an object": "[1,2,3]",
    "a string": '"kitsession:replaced"',
}

SAME_ERROR_AS_JSON_LOADS = {
    "trailing data": '{"a":1}{"b":2}',
    "trailing garbage": '{"a":1} x',
    "truncated": '{"a":[1,2',
    "empty": "",
    "bad escape": '{"a":"\\x"}',
    "BOM": '\ufeff{"a":1}',
    "unquoted key": "{a:1}",
    "too deep": "{\"a\":" * 100_000 + "1" + "}" * 100_000,
}


@pytest.mark.parametrize("text", SAME_AS_JSON_LOADS.values(), ids=SAME_AS_JSON_LOADS.keys())
def test_same_value_as_json_loads(text: str) -> None:
    expected = json.loads(text)
    value = loads_json(text)
    # repr, so NaN compares equal to itself and int/float/bool stay apart
    assert repr(value) == repr(expected)
    assert repr(JSONSerializer().loads(text)) == repr(expected)


@pytest.mark.parametrize("text", SAME_ERROR_AS_JSON_LOADS.values(), ids=SAME_ERROR_AS_JSON_LOADS.keys())
def test_same_error_as_json_loads(text: str) -> None:
    with pytest.raises(Exception) as expected:
        json.loads(text)
    with pytest.raises(type(expected.value)) as raised:
        loads_json(text)
    assert str(raised.value) == str(expected.value)


def test_keys_are_not_shared_between_parses() -> None:
    """The scanner's key memo is cleared after each parse: two results never alias each other's dicts."""
    first = loads_json('{"a":{"k":1}}')
    second = loads_json('{"a":{"k":1}}')
    first["a"]["k"] = 2
    assert second == {"a": {"k": 1}}
