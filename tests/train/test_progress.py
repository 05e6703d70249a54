"""Tests for visual_priors.train.progress: a one-line bar on terminals, silence otherwise."""

import io

from visual_priors.train import progress


class FakeTerminal(io.StringIO):
  def isatty(self):
    return True


def test_bar_rewrites_one_line_on_a_terminal(monkeypatch):
  monkeypatch.delenv("CI", raising=False)
  stream = FakeTerminal()
  bar = progress.ProgressBar(10, stream=stream, width=10)
  bar.update(5, "loss 1.0")
  bar.update(10, "loss 0.5")
  bar.close()
  text = stream.getvalue()
  assert text.count("\r") == 2 and text.endswith("\n")
  assert "[=====>    ] 5/10 loss 1.0" in text and "[==========] 10/10 loss 0.5" in text


def test_bar_is_quiet_when_not_a_tty_or_in_ci(monkeypatch):
  plain = io.StringIO()
  bar = progress.ProgressBar(10, stream=plain)
  bar.update(3)
  bar.close()
  assert plain.getvalue() == ""
  monkeypatch.setenv("CI", "true")
  assert not progress.ProgressBar(10, stream=FakeTerminal()).enabled
