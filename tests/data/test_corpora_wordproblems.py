"""Generated word problems: deterministic, well-formed, and their answers check out when re-derived."""

from __future__ import annotations

import random
import re
from fractions import Fraction

import pytest

from visual_priors.data.corpora import wordproblems

SEEDS = range(150)


def _cents(amount: str) -> int:
  dollars, _, cents = amount.lstrip("$").partition(".")
  return int(dollars) * 100 + int(cents or 0)


def _signed(sign: str, value: str) -> int:
  return -int(value) if sign == "−" else int(value)


def test_problem_sets_are_deterministic_and_prefix_stable():
  first = list(wordproblems.problem_sets(seed=0, documents=20, per_document=4))
  assert first == list(wordproblems.problem_sets(seed=0, documents=20, per_document=4))
  assert first[:5] == list(wordproblems.problem_sets(seed=0, documents=5, per_document=4))
  assert first != list(wordproblems.problem_sets(seed=1, documents=20, per_document=4))
  for _, text in first:
    assert text.count("Problem: ") == text.count("Solution:\n") == text.count("\nAnswer: ") == 4


@pytest.mark.parametrize("template", wordproblems.TEMPLATES, ids=lambda t: t.__name__)
def test_every_template_renders_a_question_steps_and_an_answer(template):
  for seed in SEEDS:
    problem = template(random.Random(seed))
    assert problem.question.endswith("?") or problem.question.endswith(".")
    assert problem.steps and problem.answer
    assert "None" not in problem.render()


def test_linear_equation_answers_satisfy_the_equation():
  for seed in SEEDS:
    problem = wordproblems.linear_equation(random.Random(seed))
    a, sign, b, c = re.fullmatch(r"Solve for x: (\d+)x ([+−]) (\d+) = (-?\d+)\.", problem.question).groups()
    x = int(problem.answer.removeprefix("x = "))
    assert int(a) * x + _signed(sign, b) == int(c)


def test_quadratic_roots_are_roots():
  for seed in SEEDS:
    problem = wordproblems.quadratic(random.Random(seed))
    body = re.fullmatch(r"Solve the equation x²(.*) = 0\.", problem.question).group(1)
    linear = re.search(r"([+−]) (\d*)x", body)  # " − 3x", " + x" or absent
    constant = re.search(r"([+−]) (\d+)$", body)  # " − 42" or absent
    b = _signed(linear.group(1), linear.group(2) or "1") if linear else 0
    c = _signed(*constant.groups()) if constant else 0
    roots = [int(r) for r in re.findall(r"x = (-?\d+)", problem.answer)]
    assert roots and all(r * r + b * r + c == 0 for r in roots), problem.render()


def test_shopping_change_adds_up():
  for seed in SEEDS:
    problem = wordproblems.shopping_change(random.Random(seed))
    (count_a, price_a), (count_b, price_b) = re.findall(r"(\d+) [a-z ]+? at (\$[\d.]+) each", problem.question)
    bill = re.search(r"with a (\$\d+) bill", problem.question).group(1)
    expected = _cents(bill) - int(count_a) * _cents(price_a) - int(count_b) * _cents(price_b)
    assert 0 <= expected == _cents(problem.answer)


def test_ticket_answers_satisfy_both_equations():
  for seed in SEEDS:
    problem = wordproblems.tickets(random.Random(seed))
    count, takings, adult, child = map(int, re.findall(r"\d+", problem.question))
    adults = int(problem.answer.split()[0])
    assert 0 < adults < count and adults * adult + (count - adults) * child == takings


def test_pizza_leftover_is_one_minus_both_shares():
  for seed in SEEDS:
    problem = wordproblems.pizza_fractions(random.Random(seed))
    first, second = (Fraction(f) for f in re.findall(r"(\d+/\d+)", problem.question))
    assert Fraction(problem.answer) == 1 - first - second > 0


def test_mean_is_sum_over_count():
  for seed in SEEDS:
    problem = wordproblems.mean_score(random.Random(seed))
    scores = [int(s) for s in re.search(r"are ([\d, ]+)\.", problem.question).group(1).split(", ")]
    assert Fraction(problem.answer) == Fraction(sum(scores), len(scores))
