"""The LLM labelling instructions: one segment per request, a JSON reply, and the prompt's version."""

from __future__ import annotations

import hashlib

from visual_priors.data import categories

# What each label covers beyond its one-line definition, written for the labelling model.
_GUIDANCE = {
    "code": "source code, pseudo-code, API or library documentation, debugging, build and system "
            "administration details",
    "math": "formulas, equations, theorems, proofs, formal logic, or step-by-step calculation",
    "science": "experiments, measurements, statistics and statistical tests, evidence for or against "
               "a hypothesis, or explanations of how a natural, technical or social system works",
    "visual-concept": "concrete things one can see or picture: objects, animals, plants, people, "
                      "places, landscapes, visible actions or scenes (not abstract ideas)",
    "visual-attribute": "how something looks: colours, sizes, shapes, textures, materials, patterns, "
                        "brightness or artistic style",
    "visual-relationship": "where things are relative to each other (on, under, beside, behind, "
                           "inside, between, facing) or which parts make up a whole",
}
assert set(_GUIDANCE) == set(categories.LABELS), "every label needs guidance"

SYSTEM_PROMPT = "\n".join([
    "You label text segments taken from a language-model pre-training corpus.",
    "A segment may carry several labels, or none. The labels are:",
    *(f"- {label}: {categories.LABEL_DEFINITIONS[label]}. Includes {_GUIDANCE[label]}."
      for label in categories.LABELS),
    "Judge only what the segment itself contains; a passing mention is not enough.",
    'Reply with only a JSON object of the form {"labels": ["<label>", ...]} using the label names '
    'exactly as written above, or {"labels": []} when no label applies. Do not explain.',
])

# Sent after a reply that could not be parsed, together with that reply.
REPAIR_PROMPT = ('That reply could not be read. Answer again with only the JSON object '
                 '{"labels": [...]}, using only these names: ' + ", ".join(categories.LABELS) + ".")

# Changes whenever the instructions change, so cached labels from other instructions are never reused.
PROMPT_VERSION = "v1-" + hashlib.sha256(f"{SYSTEM_PROMPT}\n{REPAIR_PROMPT}".encode()).hexdigest()[:10]


def segment_messages(text: str) -> list[dict[str, str]]:
  """The chat messages that ask for one segment's labels."""
  return [
      {"role": "system", "content": SYSTEM_PROMPT},
      {"role": "user", "content": f"Segment:\n<<<\n{text}\n>>>"},
  ]


def repair_messages(text: str, bad_reply: str) -> list[dict[str, str]]:
  """The messages that ask again after `bad_reply` could not be parsed."""
  return [
      *segment_messages(text),
      {"role": "assistant", "content": bad_reply},
      {"role": "user", "content": REPAIR_PROMPT},
  ]
