"""Tests for visual_priors.data.categories."""

import pytest

from visual_priors.data import categories
from visual_priors.names import UnknownNameError


def test_sixteen_sources_six_labels_two_unions():
  assert len(categories.SOURCES) == 16
  assert len(categories.LABELS) == 6
  assert categories.labels_of("reasoning") == ("code", "math", "science")
  assert categories.labels_of("visual") == ("visual-concept", "visual-attribute", "visual-relationship")


def test_published_rates_are_the_paper_table():
  rates = categories.published_rates()
  assert sorted(rates) == sorted(["web-crawl", "encyclopedia", "academia", "literature", "math", "code"])
  assert rates["code"]["code"] == pytest.approx(0.967)
  assert rates["literature"]["visual"] == pytest.approx(0.335)
  assert rates["academia"]["reasoning"] == pytest.approx(0.833)


@pytest.mark.parametrize("bad, hint", [("web_crawl", "web-crawl"), ("reasonning", "reasoning"),
                                       ("visual-concepts", "visual-concept")])
def test_unknown_names_suggest_close_matches(bad, hint):
  resolve = categories.resolve_source if bad == "web_crawl" else categories.resolve_category
  with pytest.raises(UnknownNameError, match=hint):
    resolve(bad)


def test_label_rates_reject_out_of_range():
  with pytest.raises(ValueError, match="fractions"):
    categories.LabelRates("code", {"code": 96.7})
