"""Built-in corpus sources, one module per source; each exposes `BUILDER` (a SourceBuilder)."""
