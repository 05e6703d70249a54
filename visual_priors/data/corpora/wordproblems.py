"""Seeded generator of arithmetic and algebra word problems with worked, checked solutions."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Iterator
from fractions import Fraction

GENERATOR_VERSION = "1"
NAMES = ("Ava", "Ben", "Chloe", "Daniel", "Elena", "Farid", "Grace", "Hiro", "Isabel", "Jamal", "Kofi",
         "Lena", "Mateo", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tariq", "Uma", "Victor",
         "Wen", "Ximena", "Yusuf", "Zoe")
# (plural name, lowest and highest price in cents)
GOODS = (("notebooks", 120, 480), ("pencils", 25, 90), ("apples", 30, 95), ("sandwiches", 350, 795),
         ("bottles of juice", 150, 325), ("cinema tickets", 500, 1500), ("balls of yarn", 275, 650),
         ("packets of seeds", 85, 240), ("loaves of bread", 210, 460), ("comic books", 299, 899))


@dataclasses.dataclass(frozen=True)
class Problem:
  question: str
  steps: tuple[str, ...]
  answer: str

  def render(self) -> str:
    steps = "\n".join(self.steps)
    return f"Problem: {self.question}\nSolution:\n{steps}\nAnswer: {self.answer}"


def money(cents: int) -> str:
  return f"${cents // 100}" if cents % 100 == 0 else f"${cents // 100}.{cents % 100:02d}"


def number(value: Fraction) -> str:
  """An exact number: an integer, a terminating decimal, or a fraction."""
  if value.denominator == 1:
    return str(value.numerator)
  denominator = value.denominator
  for prime in (2, 5):
    while denominator % prime == 0:
      denominator //= prime
  if denominator == 1:
    return f"{float(value):.10f}".rstrip("0")
  return f"{value.numerator}/{value.denominator}"


def approximately(value: Fraction) -> str:
  """`number(value)`, followed by a 2-decimal approximation when it is a fraction."""
  exact = number(value)
  return f"{exact} ≈ {float(value):.2f}" if "/" in exact else exact


def signed(value: int) -> str:
  return f"+ {value}" if value >= 0 else f"− {-value}"


def _two(rng: random.Random) -> tuple[str, str]:
  first, second = rng.sample(NAMES, 2)
  return first, second


def shopping_change(rng: random.Random) -> Problem:
  name = rng.choice(NAMES)
  (item_a, low_a, high_a), (item_b, low_b, high_b) = rng.sample(GOODS, 2)
  count_a, count_b = rng.randint(2, 9), rng.randint(2, 6)
  price_a, price_b = rng.randrange(low_a, high_a, 5), rng.randrange(low_b, high_b, 5)
  cost_a, cost_b = count_a * price_a, count_b * price_b
  total = cost_a + cost_b
  bill = next(b for b in (1000, 2000, 5000, 10000, 20000, 50000) if b >= total)
  change = bill - total
  return Problem(
      f"{name} buys {count_a} {item_a} at {money(price_a)} each and {count_b} {item_b} at "
      f"{money(price_b)} each, and pays with a {money(bill)} bill. How much change does {name} get?",
      (f"Cost of the {item_a}: {count_a} × {money(price_a)} = {money(cost_a)}.",
       f"Cost of the {item_b}: {count_b} × {money(price_b)} = {money(cost_b)}.",
       f"Total: {money(cost_a)} + {money(cost_b)} = {money(total)}.",
       f"Change: {money(bill)} − {money(total)} = {money(change)}."),
      money(change))


def linear_equation(rng: random.Random) -> Problem:
  x = rng.choice([v for v in range(-12, 13) if v])
  a = rng.randint(2, 9)
  b = rng.choice([v for v in range(-20, 21) if v])
  c = a * x + b
  move = f"Subtract {b} from both sides" if b > 0 else f"Add {-b} to both sides"
  return Problem(
      f"Solve for x: {a}x {signed(b)} = {c}.",
      (f"{move}: {a}x = {c - b}.",
       f"Divide both sides by {a}: x = {c - b} / {a} = {x}.",
       f"Check: {a} × ({x}) {signed(b)} = {c}."),
      f"x = {x}")


def speed_distance(rng: random.Random) -> Problem:
  speed, hours = rng.randrange(30, 125, 5), rng.randint(2, 5)
  later = rng.choice([h for h in range(2, 10) if h != hours])
  vehicle = rng.choice(("train", "bus", "cyclist", "ferry", "truck"))
  distance = speed * hours
  return Problem(
      f"A {vehicle} travels {distance} km in {hours} hours at a constant speed. How far does it travel "
      f"in {later} hours at the same speed?",
      (f"Speed: {distance} km ÷ {hours} h = {speed} km/h.",
       f"Distance in {later} hours: {speed} km/h × {later} h = {speed * later} km."),
      f"{speed * later} km")


def discount(rng: random.Random) -> Problem:
  price = rng.randrange(20, 401) * 100
  rate = rng.choice((10, 15, 20, 25, 30, 40, 50))
  item = rng.choice(("jacket", "bicycle", "lamp", "pair of boots", "tent", "backpack", "guitar"))
  off = price * rate // 100
  return Problem(
      f"A {item} costs {money(price)}. It is on sale for {rate}% off. What is the sale price?",
      (f"Discount: {rate}% of {money(price)} = {rate}/100 × {money(price)} = {money(off)}.",
       f"Sale price: {money(price)} − {money(off)} = {money(price - off)}."),
      money(price - off))


def rectangle(rng: random.Random) -> Problem:
  width = rng.randint(2, 30)
  length = rng.randint(width + 1, 45)
  cost = rng.randint(3, 25)
  perimeter = 2 * (length + width)
  return Problem(
      f"A rectangular garden is {length} m long and {width} m wide. What is its area, and how much does "
      f"a fence around it cost at ${cost} per metre?",
      (f"Area: {length} m × {width} m = {length * width} m².",
       f"Perimeter: 2 × ({length} m + {width} m) = {perimeter} m.",
       f"Fence: {perimeter} m × ${cost}/m = ${perimeter * cost}."),
      f"{length * width} m², ${perimeter * cost}")


def pizza_fractions(rng: random.Random) -> Problem:
  first, second = _two(rng)
  while True:
    a, b = Fraction(rng.randint(1, 5), rng.choice((2, 3, 4, 5, 6, 8))), Fraction(
        rng.randint(1, 5), rng.choice((2, 3, 4, 6, 8, 10, 12)))
    if a + b < 1:
      break
  common = math.lcm(a.denominator, b.denominator)
  eaten_over_common = f"{(a + b).numerator * common // (a + b).denominator}/{common}"
  eaten = eaten_over_common if (a + b).denominator == common else f"{eaten_over_common} = {a + b}"
  left = 1 - a - b
  return Problem(
      f"{first} eats {a} of a pizza and {second} eats {b} of it. What fraction of the pizza is left?",
      (f"Common denominator of {a.denominator} and {b.denominator}: {common}.",
       f"Eaten: {a.numerator * common // a.denominator}/{common} + {b.numerator * common // b.denominator}"
       f"/{common} = {eaten}.",
       f"Left: 1 − {a + b} = {left}."),
      f"{left}")


def ages(rng: random.Random) -> Problem:
  parent, child = _two(rng)
  young, factor, years = rng.randint(3, 15), rng.randint(2, 5), rng.randint(2, 12)
  total = young * (factor + 1) + 2 * years
  return Problem(
      f"{parent} is {factor} times as old as {child}. In {years} years the sum of their ages will be "
      f"{total}. How old is each of them now?",
      (f"Let {child}'s age be x; then {parent}'s age is {factor}x.",
       f"In {years} years: (x + {years}) + ({factor}x + {years}) = {total}, so {factor + 1}x + "
       f"{2 * years} = {total}.",
       f"{factor + 1}x = {total - 2 * years}, so x = {young}.",
       f"{parent} is {factor} × {young} = {factor * young}."),
      f"{child} is {young} and {parent} is {factor * young}")


def tickets(rng: random.Random) -> Problem:
  adults, children = rng.randint(1, 40), rng.randint(1, 40)
  adult_price = rng.randint(6, 20)
  child_price = rng.randint(2, adult_price - 1)
  count, takings = adults + children, adults * adult_price + children * child_price
  return Problem(
      f"A museum sold {count} tickets for ${takings} in total. Adult tickets cost ${adult_price} and child "
      f"tickets cost ${child_price}. How many adult tickets were sold?",
      (f"Let a be the number of adult tickets; then {count} − a child tickets were sold.",
       f"{adult_price}a + {child_price}({count} − a) = {takings}.",
       f"{adult_price - child_price}a + {child_price * count} = {takings}, so "
       f"{adult_price - child_price}a = {takings - child_price * count}.",
       f"a = {adults}; child tickets: {count} − {adults} = {children}."),
      f"{adults} adult tickets")


def quadratic(rng: random.Random) -> Problem:
  r1, r2 = rng.randint(-9, 9), rng.randint(-9, 9)
  b, c = -(r1 + r2), r1 * r2
  linear = "" if b == 0 else f" {'+' if b > 0 else '−'} {abs(b) if abs(b) != 1 else ''}x"
  equation = "x²" + linear + (f" {signed(c)}" if c else "") + " = 0"
  roots = sorted({r1, r2})
  factor = lambda r: "x" if r == 0 else f"(x {signed(-r)})"  # noqa: E731
  return Problem(
      f"Solve the equation {equation}.",
      (f"Find two numbers whose product is {c} and whose sum is {-b}: {r1} and {r2}.",
       f"Factor: {factor(r1)}{factor(r2)} = 0.",
       "A product is zero when one of its factors is zero."),
      " or ".join(f"x = {r}" for r in roots))


def mean_score(rng: random.Random) -> Problem:
  name = rng.choice(NAMES)
  scores = [rng.randint(50, 100) for _ in range(rng.randint(4, 7))]
  mean = Fraction(sum(scores), len(scores))
  return Problem(
      f"{name}'s test scores are {', '.join(map(str, scores))}. What is the mean score?",
      (f"Sum: {' + '.join(map(str, scores))} = {sum(scores)}.",
       f"Mean: {sum(scores)} ÷ {len(scores)} = {approximately(mean)}."),
      number(mean))


def simple_interest(rng: random.Random) -> Problem:
  principal, rate, years = rng.randrange(500, 10001, 100), rng.randint(2, 9), rng.randint(2, 6)
  interest = Fraction(principal * rate * years, 100)
  return Problem(
      f"${principal} is invested at {rate}% simple interest per year. How much is in the account after "
      f"{years} years?",
      (f"Interest per year: {rate}% of ${principal} = ${number(Fraction(principal * rate, 100))}.",
       f"Interest over {years} years: {years} × ${number(Fraction(principal * rate, 100))} = "
       f"${number(interest)}.",
       f"Total: ${principal} + ${number(interest)} = ${number(principal + interest)}."),
      f"${number(principal + interest)}")


def buses(rng: random.Random) -> Problem:
  a, b = rng.sample(range(6, 31), 2)
  together = math.lcm(a, b)
  start = rng.randint(6, 9)
  hours, minutes = divmod(start * 60 + together, 60)
  return Problem(
      f"Bus A leaves the station every {a} minutes and bus B every {b} minutes. Both leave at "
      f"{start}:00. When do they next leave together?",
      (f"They leave together after a common multiple of {a} and {b} minutes.",
       f"The least common multiple: lcm({a}, {b}) = {a} × {b} ÷ gcd({a}, {b}) = {a * b} ÷ "
       f"{math.gcd(a, b)} = {together} minutes.",
       f"{start}:00 + {together} minutes = {hours}:{minutes:02d}."),
      f"{hours}:{minutes:02d}")


def recipe(rng: random.Random) -> Problem:
  servings, wanted = rng.sample((2, 3, 4, 5, 6, 8, 10, 12), 2)
  grams = rng.randrange(50, 601, 25)
  ingredient = rng.choice(("flour", "sugar", "rice", "butter", "oats", "lentils"))
  needed = Fraction(grams * wanted, servings)
  return Problem(
      f"A recipe for {servings} servings uses {grams} g of {ingredient}. How much {ingredient} is needed "
      f"for {wanted} servings?",
      (f"Per serving: {grams} g ÷ {servings} = {number(Fraction(grams, servings))} g.",
       f"For {wanted} servings: {wanted} × {number(Fraction(grams, servings))} g = {number(needed)} g."),
      f"{number(needed)} g")


TEMPLATES: tuple[Callable[[random.Random], Problem], ...] = (
    shopping_change, linear_equation, speed_distance, discount, rectangle, pizza_fractions, ages,
    tickets, quadratic, mean_score, simple_interest, buses, recipe)


def problem_sets(seed: int, documents: int, per_document: int) -> Iterator[tuple[int, str]]:
  """`documents` texts of `per_document` worked problems each, as (index, text); each document has
  its own seed, so any prefix of the stream is the same whatever the number of documents."""
  for index in range(documents):
    rng = random.Random(f"visual_priors.wordproblems/{seed}/{index}")
    problems = [rng.choice(TEMPLATES)(rng) for _ in range(per_document)]
    yield index, "\n\n".join(p.render() for p in problems)
