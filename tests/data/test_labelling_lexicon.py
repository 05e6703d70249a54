"""Tests for visual_priors.data.labelling.lexicon: clear-cut segments, tuning, and quality on the test split."""

import shutil

import pytest

from visual_priors.data import categories
from visual_priors.data.labelling import evaluate, lexicon

PYTHON_CODE = '''
def merge_sorted(left, right):
    """Merge two sorted lists into one sorted list."""
    result, i, j = [], 0, 0
    while i < len(left) and j < len(right):
        if left[i] <= right[j]:
            result.append(left[i])
            i += 1
        else:
            result.append(right[j])
            j += 1
    result.extend(left[i:])
    result.extend(right[j:])
    return result


class Cache:
    def __init__(self, capacity):
        self.capacity = capacity
        self._items = {}
'''

MATH_PROOF = r"""
Theorem 2. For every integer $n \geq 1$ we have $\sum_{k=1}^{n} k = \frac{n(n+1)}{2}$.
Proof. We argue by induction on $n$. For $n = 1$ both sides equal 1. Suppose the identity holds for
$n$; then $\sum_{k=1}^{n+1} k = \frac{n(n+1)}{2} + (n+1) = \frac{(n+1)(n+2)}{2}$, which is the claim
for $n+1$. Hence the formula holds for all natural numbers. As a corollary, the sum of the first
$n$ odd integers is $n^2$, since each odd integer is $2k-1$ and the polynomial identity follows. QED.
"""

SCIENCE_STUDY = """
To test the hypothesis that soil temperature controls germination, the researchers ran a controlled
experiment with 240 seed samples at 12 °C, 18 °C and 24 °C. Germination rate was measured daily for
three weeks. The data show a strong correlation between temperature and rate (r = 0.81), and a
regression model fitted to the measurements predicts the observed values well. A t test rejected the
null hypothesis (p < 0.01). The authors conclude that temperature is the dominant factor, although
moisture and light remain possible confounding variables that a further study should control.
"""

VISUAL_SCENE = """
A small red boat with a white sail lies on the sandy beach, next to a tall wooden lighthouse. Behind
the lighthouse, green hills rise under a pale blue sky, and a brown dog sits beside an old fisherman
who is mending a large net. Two children in yellow coats are running along the shore, holding a kite
with a long striped tail. On top of a flat grey rock, a black-and-white gull stands on one leg, and a
round basket filled with shiny silver fish rests at the foot of the rock.
"""

POLICY_PROSE = """
It is the duty of the Congress to consider with care every proposal that would alter the obligations of
the Government to the people. I have recommended before, and I recommend again, that the present laws
governing the appointment of officers be revised, so that responsibility is concentrated instead of
divided. The confidence of the nation in its institutions rests upon their fairness, and no temporary
advantage can justify a departure from that principle. I trust that you will give these matters your
early and earnest attention, and that our relations with other nations will remain friendly.
"""


@pytest.fixture(scope="module")
def labeller():
  return lexicon.LexiconLabeller()


@pytest.mark.parametrize("text, expected", [
    (PYTHON_CODE, {"code"}),
    (MATH_PROOF, {"math"}),
    (SCIENCE_STUDY, {"science"}),
    (VISUAL_SCENE, {"visual-concept", "visual-attribute", "visual-relationship"}),
    (POLICY_PROSE, set()),
], ids=["code", "math", "science", "visual", "none"])
def test_clear_cut_segments(labeller, text, expected):
  assert labeller.label([text]) == [frozenset(expected)]


def test_label_keeps_order_and_count(labeller):
  labels = labeller.label([POLICY_PROSE, PYTHON_CODE, VISUAL_SCENE, ""])
  assert labels[0] == frozenset() and "code" in labels[1] and "visual-concept" in labels[2]
  assert labels[3] == frozenset()


def test_plurals_and_phrases_match(labeller):
  one = labeller.lexicons.hits("the dog")[0][categories.LABELS.index("visual-concept")]
  many = labeller.lexicons.hits("the dogs")[0][categories.LABELS.index("visual-concept")]
  assert one == many == 1
  relationship = categories.LABELS.index("visual-relationship")
  assert labeller.lexicons.hits("the cup stood next to it")[0][relationship] == 1
  assert labeller.lexicons.hits("he sat on the small bench")[0][relationship] == 1


def test_relationship_words_count_only_near_a_visual_concept(labeller):
  relationship = categories.LABELS.index("visual-relationship")
  assert labeller.lexicons.hits("the base of the lamp")[0][relationship] == 1
  assert labeller.lexicons.hits("the customer base grew")[0][relationship] == 0
  assert labeller.lexicons.hits("it was next to it")[0][relationship] == 0


def test_part_whole_markers_count_between_two_visual_concepts(labeller):
  relationship = categories.LABELS.index("visual-relationship")
  assert labeller.lexicons.hits("a duck with red feathers")[0][relationship] == 1
  assert labeller.lexicons.hits("the dog has a thick tail")[0][relationship] == 1
  assert labeller.lexicons.hits("he came with a smile")[0][relationship] == 0  # no visual concept before "with"
  assert labeller.lexicons.hits("a bird sat on a small green branch")[0][relationship] == 1


def test_units_alone_do_not_make_a_worked_exercise_science(labeller):
  exercise = ("Problem: A train travels 100 km in 2 hours at a constant speed. How far does it travel in 8 hours?\n"
              "Solution:\nSpeed: 100 km / 2 h = 50 km/h.\nDistance in 8 hours: 50 km/h × 8 h = 400 km.\n"
              "Answer: 400 km\n")
  assert "science" not in labeller.label([exercise])[0]
  assert labeller.scores(SCIENCE_STUDY)["science"] > labeller.scores(exercise)["science"]


def test_rules_drawn_with_operators_are_no_code(labeller):
  banner = "=-=-=-=-=-=-=-=-=-=-=-= The conditional operator for propositions =-=-=-=-=-=-=-=-=-=-=-=\n" * 3
  assert labeller.scores(banner + "=" * 60 + "\n")["code"] == 0.0
  assert labeller.scores("if a == b && c != d:\n    x += 1\n")["code"] > 0


def test_a_few_math_words_leave_visual_labels_on(labeller):
  gloss = ("root hair: thin hairlike outgrowth of a cell just behind the tip of a root; prop root: a root that grows "
           "from the stem above the ground; root cap: a thimble-shaped mass of cells covering the tip of a root")
  assert labeller.scores(gloss)["visual-concept"] > 0.0


def test_math_notation_is_no_code_and_code_structure_is(labeller):
  word_problem = "Problem: Solve for x: 2x + 19 = 15.\nSolution:\nx = -2, since lcm(4, 6) = 12 and gcd(4, 6) = 2.\n"
  assert labeller.scores(word_problem)["code"] == 0.0 and labeller.scores(word_problem)["math"] > 0
  go = "// IsSpace reports whether r is a space.\nfunc IsSpace(r rune) bool {\n\treturn r == 0x20\n}\n"
  assert labeller.scores(go)["code"] >= lexicon.TECHNICAL_SCORE
  bullets = "Features:\n    * A single interface for package selection\n    * Enhanced security.\n"
  assert lexicon.STRUCTURE_PATTERNS["code"][-3].search(bullets) is None  # indented bullets are no code lines


def test_technical_text_gets_no_visual_labels(labeller):
  code_naming_objects = "\n".join(f"    table_{i} = box.key(door, window={i}); head(tree)" for i in range(12))
  scores = labeller.scores(code_naming_objects)
  assert scores["code"] >= lexicon.TECHNICAL_SCORE
  assert all(scores[label] == 0.0 for label in categories.VISUAL_LABELS)


def test_tune_thresholds_separates_a_made_up_case():
  scores = [{label: value for label in categories.LABELS} for value in (1.0, 2.0, 5.0, 6.0)]
  gold = [frozenset(), frozenset(), frozenset({"code"}), frozenset({"code"})]
  thresholds = lexicon.tune_thresholds(scores, gold)
  assert thresholds["code"] == pytest.approx(3.5)  # The only midpoint with F1 = 1.
  assert thresholds["math"] > 6.0  # No positives at all: the best threshold predicts none.
  with pytest.raises(ValueError, match="as many"):
    lexicon.tune_thresholds(scores, gold[:2])


def test_lexicon_dir_needs_every_label_file(tmp_path):
  shutil.copytree(lexicon.LEXICON_DIR, tmp_path / "lex")
  (tmp_path / "lex" / "science.txt").unlink()
  with pytest.raises(FileNotFoundError, match="science.txt"):
    lexicon.LexiconLabeller(tmp_path / "lex")


def test_name_changes_with_thresholds():
  base_thresholds = lexicon.read_thresholds()
  higher = {**base_thresholds, "code": base_thresholds["code"] + 1.0}
  assert lexicon.LexiconLabeller().name != lexicon.LexiconLabeller(thresholds=higher).name


def test_stored_thresholds_match_the_lexicons():
  """thresholds.json must be re-tuned whenever a lexicon or pattern changes."""
  import json  # pylint: disable=import-outside-toplevel
  stored = json.loads((lexicon.LEXICON_DIR / lexicon.THRESHOLDS_FILE).read_text())
  assert stored["lexicon_digest"] == lexicon.Lexicons().digest


# Measured once on the fresh test split (batch v3-fresh-test, 350 segments; see
# visual_priors/data/labelling/assets/README.md) after the lexicons, patterns and thresholds were last changed using
# the dev split only (v1 and v2 batches): micro F1 0.788 (P 0.844, R 0.740). The floor leaves room for small lexicon
# edits but catches a broken lexicon, pattern or threshold file.
TEST_SPLIT_MICRO_F1_FLOOR = 0.76
# Per-label (precision, recall) on the test split at that measurement. A label may not fall more than
# FLOOR_SLACK below them.
MEASURED_ON_TEST = {
    "code": (0.906, 0.914), "math": (0.747, 0.881), "science": (0.667, 0.429),
    "visual-concept": (0.840, 0.708), "visual-attribute": (0.875, 0.737), "visual-relationship": (0.848, 0.412),
}
FLOOR_SLACK = 0.03
# Labels with enough test positives that still miss evaluate.TARGET_PRECISION / TARGET_RECALL (math: P 0.75;
# visual-relationship: R 0.41). Their target tests are strict xfails: reaching the targets fails them, so that this
# set is shrunk when it happens. Science has 14 test positives, fewer than TARGET_MIN_SUPPORT.
MISSING_TARGETS = {"math", "visual-relationship"}


@pytest.fixture(scope="module")
def on_test(labeller):
  return evaluate.evaluate(labeller, evaluate.load_handlabelled("test"))


def test_micro_f1_on_the_test_split_stays_above_the_floor(on_test):
  assert on_test.micro.f1 >= TEST_SPLIT_MICRO_F1_FLOOR, evaluate.format_evaluation(on_test, "test split")


@pytest.mark.parametrize("label", categories.LABELS)
def test_no_label_falls_below_its_measured_precision_and_recall(on_test, label):
  scores, (precision, recall) = on_test.per_label[label], MEASURED_ON_TEST[label]
  assert scores.precision >= precision - FLOOR_SLACK and scores.recall >= recall - FLOOR_SLACK, (
      evaluate.format_evaluation(on_test, "test split"))


@pytest.mark.parametrize("label", [
    pytest.param(label, marks=pytest.mark.xfail(
        strict=True, reason="misses the targets: measured P {:.3f}, R {:.3f}".format(*MEASURED_ON_TEST[label])))
    if label in MISSING_TARGETS else label for label in categories.LABELS])
def test_labels_with_enough_support_reach_the_targets(on_test, label):
  scores = on_test.per_label[label]
  if scores.support < evaluate.TARGET_MIN_SUPPORT:
    assert label not in MISSING_TARGETS
    pytest.skip(f"{label} has {scores.support} test positives, fewer than {evaluate.TARGET_MIN_SUPPORT}")
  assert scores.precision >= evaluate.TARGET_PRECISION and scores.recall >= evaluate.TARGET_RECALL, (
      evaluate.format_evaluation(on_test, "test split"))
