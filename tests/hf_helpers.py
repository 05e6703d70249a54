"""Helpers of the Hugging Face interoperability tests: a framework-style SentencePiece vocabulary, random decoder runs."""

import atexit
import dataclasses
import os
import pathlib
import shutil
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# lm-eval loads task data through `datasets`, which caches under HF_HOME: a temporary folder, not the user's.
if "HF_HOME" not in os.environ:
  os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="visual_priors-test-hf-")
  atexit.register(shutil.rmtree, os.environ["HF_HOME"], ignore_errors=True)

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from visual_priors.data import cache  # noqa: E402
from visual_priors.models import sharding  # noqa: E402
from visual_priors.models.decoder import Decoder, DecoderConfig  # noqa: E402
from visual_priors.train import checkpoint, partition, state  # noqa: E402

# Code, prose, numbers and non-ASCII text: what the vocabulary is trained on and the tokenizer tests encode.
SAMPLE_TEXTS = [
    "def area(radius):\n    \"\"\"Area of a circle.\"\"\"\n    return 3.14159 * radius ** 2  # float\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}\n",
    "The red cube sits to the left of a small blue sphere, and a green cylinder stands behind them.",
    "Mathematics: if x + 12 = 40, then x = 28; the sum 1 + 2 + ... + 100 equals 5050.",
    "Ünïcödé text: naïve café, Straße, 東京タワー, Ελληνικά, emoji 🙂🚀, math ∑ ∫ √2 ≈ 1.414.",
    "   indented line\n\n\nthree newlines and  double  spaces\t\ttabs",
    "She asked, \"Is the window open?\" He answered: 'No -- it's closed.'",
]


def train_spm(directory: pathlib.Path) -> pathlib.Path:
  """A unigram SentencePiece model with the framework's settings (visual_priors/data/vocab.py)."""
  import sentencepiece as spm  # pylint: disable=import-outside-toplevel

  prefix = directory / "spm"
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(SAMPLE_TEXTS * 40), model_prefix=str(prefix), vocab_size=600, model_type="unigram",
      pad_id=0, eos_id=1, unk_id=2, bos_id=-1, normalization_rule_name="identity", remove_extra_whitespaces=False,
      allow_whitespace_only_pieces=True, split_digits=True, byte_fallback=True, hard_vocab_limit=False,
      minloglevel=2, num_threads=1)
  return prefix.with_suffix(".model")


def vocab_size(model_path: pathlib.Path) -> int:
  import sentencepiece as spm  # pylint: disable=import-outside-toplevel
  return spm.SentencePieceProcessor(model_file=str(model_path)).get_piece_size()


def tiny_config(vocab: int, *, tie: bool) -> DecoderConfig:
  """GQA (4 query heads, 2 KV heads), Llama 3's rope_theta, float32 compute."""
  return DecoderConfig(vocab_size=vocab, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=160,
                       rope_theta=500000.0, tie_embeddings=tie, norm_eps=1e-5, dtype="float32")


def write_random_run(work_dir: pathlib.Path, model_config: DecoderConfig, vocab_path: pathlib.Path, *,
                     seed: int = 0, seq_len: int = 64) -> pathlib.Path:
  """A finished pretrain run (checkpoint + manifest) whose every variable, norms included, is random."""
  mesh = sharding.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, jax.devices()[:1])
  spec = state.build_state_spec(lambda rngs: Decoder(model_config, rngs=rngs), optax.sgd(0.0), mesh,
                                sharding.DEFAULT_LOGICAL_AXIS_RULES, seed=seed)
  rng = np.random.default_rng(seed)
  given = {path: (rng.standard_normal(leaf.shape) * (0.1 if len(leaf.shape) > 1 else 0.2) +
                  (1.0 if path.endswith("scale") else 0.0)).astype(np.float32)
           for path, leaf in state.variables(spec.abstract).items()}
  initial = spec.create(given)
  checkpointer = checkpoint.Checkpointer(work_dir / checkpoint.CHECKPOINTS, keep=1, async_save=False)
  try:
    checkpointer.save(1, initial, {})
    checkpointer.wait()
  finally:
    checkpointer.close()
  cache.write_json_atomic(work_dir / "manifest.json", {
      "stage": "pretrain", "config": {"seq_len": seq_len, "scale": "custom"}, "model": dataclasses.asdict(model_config),
      "step": 1, "checkpoint_dir": str(checkpointer.directory),
      "data": {"vocab": str(vocab_path), "vocab_sha256": cache.sha256_file(vocab_path)}})
  return work_dir


def variables_of(model: nnx.Module) -> dict[str, np.ndarray]:
  return {path: np.asarray(leaf) for path, leaf in partition.flatten_paths(nnx.to_pure_dict(nnx.state(model))).items()}
