"""Text of a point: fields, nested keys, templates; what is not text (objects) and what tokenizers cannot take."""

from __future__ import annotations

import pytest

from qdrant_distill.connectors.base import TextSource
from qdrant_distill.errors import ConfigError


def test_templates_fill_nested_keys_and_lists() -> None:
    source = TextSource(template="{meta.title}: {text}")
    assert source.render({"meta": {"title": "Rivers"}, "text": "flow downhill"}) == "Rivers: flow downhill"
    assert TextSource(field="meta.title").render({"meta": {"title": "Rivers"}}) == "Rivers"
    assert TextSource(template="{title} {tags}").render({"title": "t", "tags": ["a", "b"]}) == "t a b"
    assert TextSource(template="{a} {b}").render({"a": "only"}) == "only"


def test_objects_are_not_text() -> None:
    assert TextSource().render({"text": {"en": "a river"}}) is None
    assert TextSource().render({"text": [{"en": "a river"}]}) is None
    assert TextSource(template="{title} {text}").render({"title": "t", "text": {"x": 1}}) == "t"


def test_lone_surrogates_become_replacement_characters() -> None:
    text = TextSource().render({"text": "caf\udce9 au lait"})
    assert text == "caf\ufffd au lait" and text.encode("utf-8")


@pytest.mark.parametrize("template", ["{text!r}", "{text:>10}", "{title} {text!s}", "no field", "{}"])
def test_templates_take_plain_keys_only(template: str) -> None:
    with pytest.raises(ConfigError):
        TextSource(template=template)
