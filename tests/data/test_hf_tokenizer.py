"""The exported Hugging Face tokenizer gives the framework's ids; an imported one becomes the same vocabulary."""

import json

import pytest
import sentencepiece as spm
import transformers

from hf_helpers import SAMPLE_TEXTS, train_spm
from visual_priors.data import hf_tokenizer

EXTRA_TEXTS = ["", " ", "x", "  ", "\n", "1234567890", "a  b   c", "naïve 東京 🙂 ☃ ∑ x² — “quoted” ﬁ", "\t\ttab\r\n"]


@pytest.fixture(scope="module")
def vocab_model(tmp_path_factory):
  return train_spm(tmp_path_factory.mktemp("vocab"))


def test_exported_tokenizer_ids_equal_the_framework_ids(vocab_model, tmp_path):
  hf_tokenizer.write_hf_tokenizer(vocab_model, tmp_path, model_max_length=128)
  tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path)
  processor = spm.SentencePieceProcessor(model_file=str(vocab_model))
  assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id, tokenizer.bos_token_id) == (0, 1, 2, 0)
  assert len(tokenizer) == processor.get_piece_size()
  sample = SAMPLE_TEXTS + EXTRA_TEXTS + ["\n\n".join(SAMPLE_TEXTS)]
  for text in sample:
    ids = processor.encode(text)
    assert tokenizer(text, add_special_tokens=False).input_ids == ids, text
    assert tokenizer(text).input_ids == [0] + ids, text  # BOS 0, as pre-training starts every example
    assert tokenizer.decode(ids) == text == processor.decode(ids)


def test_imported_tokenizer_json_is_the_same_vocabulary(vocab_model, tmp_path):
  hf_tokenizer.write_hf_tokenizer(vocab_model, tmp_path, model_max_length=128)
  (tmp_path / hf_tokenizer.TOKENIZER_MODEL).unlink()  # a directory with tokenizer.json only
  rebuilt = hf_tokenizer.vocabulary_model(tmp_path, work_dir=tmp_path / "work")
  assert rebuilt.name == hf_tokenizer.CONVERTED_MODEL
  assert hf_tokenizer.same_vocabulary(rebuilt, vocab_model)
  original, converted = (spm.SentencePieceProcessor(model_file=str(path)) for path in (vocab_model, rebuilt))
  for text in SAMPLE_TEXTS + EXTRA_TEXTS:
    assert converted.encode(text) == original.encode(text), text


def test_a_vocabulary_without_the_framework_ids_is_refused(tmp_path):
  prefix = tmp_path / "llama_style"
  spm.SentencePieceTrainer.train(  # SentencePiece's defaults, as Llama 2's: unk 0, bos 1, eos 2
      sentence_iterator=iter(SAMPLE_TEXTS * 20), model_prefix=str(prefix), vocab_size=500, byte_fallback=True,
      hard_vocab_limit=False, minloglevel=2, num_threads=1)
  with pytest.raises(ValueError, match=r"pad 0, eos 1, unk 2"):
    hf_tokenizer.vocabulary_model(prefix.with_suffix(".model"))


def test_a_byte_level_bpe_tokenizer_json_is_refused(tmp_path):
  (tmp_path / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE", "vocab": {}, "merges": []}}))
  with pytest.raises(ValueError, match="no SentencePiece form"):
    hf_tokenizer.vocabulary_model(tmp_path, work_dir=tmp_path)
