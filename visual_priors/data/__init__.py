"""Text and multimodal data: categories, corpora, labels, vocabulary, the segment store, mixtures, seqio Tasks and
Mixtures (the front door: `seqio:NAME`), the grain input pipelines and the adaptation data."""
