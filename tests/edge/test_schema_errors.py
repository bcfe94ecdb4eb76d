"""The schema checker names the first wrong place (the docstring examples of every
module run in tests/unit/test_doctests.py)."""

from __future__ import annotations

import pytest


def test_schema_names_the_first_wrong_place():
    from halfopen.model import schema
    from halfopen.model.finding import Finding

    shape = schema.List(schema.of_record(Finding))
    good = {"id": "fd-leak", "severity": "warning", "cause": "c", "title": "t",
            "evidence": [{"what": "n", "value": [1, {"a": None}], "source": "s"}]}
    schema.check([good], shape)
    for bad, where in [
            (dict(good, evidence=[{"what": "n", "value": 1}]), "$[0].evidence[0]: want the key 'source'"),
            (dict(good, id=7), "$[0].id: want a string"),
            (dict(good, extra=1), "$[0].extra: want no such key"),
            (dict(good, subject={"pid": float("inf")}), "$[0].subject.pid: want a 64-bit integer"),
            (dict(good, subject={"pid": True}), "$[0].subject.pid: want a 64-bit integer"),
            (dict(good, subject={"port": 80, "x": 2**65}), "$[0].subject.x: want no such key"),
            (dict(good, evidence=[{"what": "n", "value": 2**65, "source": "s"}]),
             "$[0].evidence[0].value: want a finite number"),
    ]:
        with pytest.raises(schema.SchemaError) as info:
            schema.check([bad], shape)
        assert str(info.value).startswith(where), str(info.value)
