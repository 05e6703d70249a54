"""Realised mixture shares over a kill and resume: the manifest's shares cover the whole run exactly once."""

from visual_priors.train import store_data


def _data(store):
  return store_data.mixture_data(store, "mix6", batch_size=8, seq_len=32, eval_batch_size=8, seed=0)


def _take(iterator, count):
  for _ in range(count):
    next(iterator)


def test_resumed_shares_count_the_batches_before_the_checkpoint_once(small_store):
  straight = _data(small_store)
  _take(straight.train_data(), 5)

  first = _data(small_store)  # the killed process: 3 batches saved in its checkpoint, 1 more lost
  iterator = first.train_data()
  _take(iterator, 3)
  saved = iterator.get_state()
  _take(iterator, 1)
  resumed = _data(small_store)  # a new process resuming from the checkpoint
  iterator = resumed.train_data()
  iterator.set_state(saved)
  _take(iterator, 2)
  # Before the fix: only the resumed process's 2 batches were counted.
  assert resumed.report() == straight.report()
  assert sum(row["tokens"] for row in resumed.report()["proportions"]) == 5 * 8 * 32 - _padding(straight)


def _padding(data):
  """Padding tokens in the straight run's 5 batches (not counted by the meter)."""
  iterator = data.train_data()
  batches = [next(iterator) for _ in range(5)]
  return int(sum((batch["decoder_segment_ids"] == 0).sum() for batch in batches))
