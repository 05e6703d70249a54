"""Text data: categories, corpora, segments and labels, vocabulary, seqio tasks/mixtures, input pipelines."""
