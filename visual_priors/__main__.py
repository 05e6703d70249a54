"""Entry point for `python -m visual_priors`."""

from visual_priors.cli import main

if __name__ == "__main__":
  raise SystemExit(main())
