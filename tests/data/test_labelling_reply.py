"""Tests for visual_priors.data.labelling.reply: reading label sets out of messy model replies."""

import pytest

from visual_priors.data.labelling import reply

V = {"visual-concept", "visual-attribute", "visual-relationship"}


@pytest.mark.parametrize("text, expected", [
    ('{"labels": ["visual-concept", "code"]}', {"visual-concept", "code"}),
    ('```json\n{"labels": ["Visual Concept", "Code Reasoning",]}\n```', {"visual-concept", "code"}),
    ('```\n["math"]\n```\nThe segment is a proof.', {"math"}),
    ('Sure! Here you go: ["math reasoning", "science_reasoning"] Hope this helps.', {"math", "science"}),
    ('I think [1] applies, so: {"labels": ["code"]}', {"code"}),
    ("{'labels': ['visual_attribute', 'VISUAL-RELATIONSHIP']}", {"visual-attribute", "visual-relationship"}),
    ('{"visual concept": true, "visual attribute": true, "visual relationship": true, "code": false}', V),
    ('{"Labels": "Visual concepts, Mathematics"}', {"visual-concept", "math"}),
    ('{"labels": [{"label": "science"}]}', {"science"}),
    ("Labels: visual relationship, Math", {"visual-relationship", "math"}),
    ("- code\n- science", {"code", "science"}),
    ("None", set()),
    ("none.", set()),
    ("[]", set()),
    ('{"labels": []}', set()),
    ('{"labels": ["None"]}', set()),
    ('{"labels": null}', set()),
    ('{"labels": ["code", "none"]}', {"code"}),
])
def test_messy_replies(text, expected):
  assert reply.parse_labels(text) == frozenset(expected)


@pytest.mark.parametrize("text", [
    "",
    "   ",
    "The segment talks about whales at length, so I would call it literature.",
    '{"labels": ["poetry"]}',
    '{"answer": "unsure"}',
    '{"labels": [3]}',
    '```json\n{"labels": ["code"\n```',
    '{"labels": ""}',  # an empty field is a malformed reply (asked again, never cached), not "no labels"
    '{"labels": "  "}',
])
def test_unreadable_replies_raise_instead_of_meaning_none(text):
  with pytest.raises(reply.UnparseableReplyError):
    reply.parse_labels(text)


@pytest.mark.parametrize("name, label", [
    ("Visual Concept", "visual-concept"), ("visual_attribute", "visual-attribute"),
    ("Spatial relationship", "visual-relationship"), ("Code Reasoning", "code"), ("maths", "math"),
    ("Science reasoning", "science"), ("None", None), ("n/a", None),
])
def test_normalise_label(name, label):
  assert reply.normalise_label(name) == label
