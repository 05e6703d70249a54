"""`visual-description` (extra source, not one of the paper's 16): CuPL descriptions of the ImageNet
classes and WordNet glosses of physical things."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator

from visual_priors.data.corpora.fetch import Fetched, Package
from visual_priors.data.corpora.model import Document, SourceBuilder, SubSource
from visual_priors.data.corpora.sources.common import spread

CUPL = "clip_benchmark/datasets/cupl_prompts.json"
WORDNET_NOUNS = "usr/share/wordnet/data.noun"
# WordNet lexicographer files of physical things: animals, artifacts, food, natural objects, plants.
PHYSICAL_LEXFILES = frozenset({"05", "06", "13", "17", "20"})
GLOSSES_PER_DOCUMENT = 40


def _cupl(fetched: Fetched) -> Iterator[Document]:
  with zipfile.ZipFile(fetched.path) as wheel:
    classes = json.loads(wheel.read(CUPL))["imagenet1k"]
  for name in spread(classes, key=str):
    yield Document("\n".join(classes[name]), f"clip-benchmark:{CUPL}#{name}")


def _physical_glosses(fetched: Fetched) -> Iterator[str]:
  """"word, synonym: gloss" lines of the physical noun synsets, in file order."""
  with open(fetched.path / WORDNET_NOUNS, encoding="latin-1") as nouns:
    for line in nouns:
      if line.startswith(" ") or " | " not in line:  # Licence header lines start with spaces.
        continue
      fields, gloss = line.split(" | ", 1)
      fields = fields.split()
      if fields[1] not in PHYSICAL_LEXFILES:
        continue
      words = [w.replace("_", " ") for w in fields[4:4 + 2 * int(fields[3], 16):2]]
      yield f"{', '.join(words)}: {gloss.strip()}"


def _wordnet(fetched: Fetched) -> Iterator[Document]:
  glosses = list(_physical_glosses(fetched))
  groups = [Document("\n".join(glosses[start:start + GLOSSES_PER_DOCUMENT]),
                     f"wordnet-base:{WORDNET_NOUNS}#glosses-{start}")
            for start in range(0, len(glosses), GLOSSES_PER_DOCUMENT)]
  yield from spread(groups, key=lambda document: document.origin)


BUILDER = SourceBuilder(
    source="visual-description",
    version=1,
    description=("Visual descriptions: the CuPL prompts for the 998 ImageNet classes (GPT-3-generated "
                 "one-sentence descriptions of how each class looks; one document per class) and the "
                 "WordNet 3.0 glosses of physical nouns (animals, artifacts, food, natural objects, "
                 f"plants; {GLOSSES_PER_DOCUMENT} consecutive glosses per document)."),
    stand_in=("Not one of the paper's 16 sources: text that the paper's visual labels measure, "
              "for ablations that add visual text directly. The CuPL half is machine-generated."),
    sub_sources=(
        SubSource("cupl-imagenet-descriptions", Package("wheel", "clip-benchmark", "1.6.2"),
                  "MIT (package); CuPL upstream data licence not stated", _cupl),
        SubSource("wordnet-physical-glosses", Package("deb", "wordnet-base"), "WordNet-3.0", _wordnet),
    ),
    parameters={"glosses_per_document": GLOSSES_PER_DOCUMENT},
)
