"""A SentencePiece vocabulary as a Hugging Face Llama tokenizer, and a Hugging Face tokenizer as a vocabulary.

Export (`write_hf_tokenizer`): `tokenizer.model` (the SentencePiece file itself), `tokenizer.json` (the same
unigram model for the `tokenizers` library: pieces and scores in id order, byte fallback, the dummy-prefix
"▁" and spaces escaped as "▁", no other normalisation, as an identity-normalised SentencePiece model
encodes), `tokenizer_config.json` (class LlamaTokenizer) and `special_tokens_map.json`. Ids are the
framework's: pad 0, eos 1, unk 2, and BOS is id 0 (`<pad>`), prepended by `add_bos_token`, because
pre-training starts every packed example with id 0. So `tok(text, add_special_tokens=False).input_ids` is
the framework's encoding of `text` and `tok(text).input_ids` is `[0] + ` that: what the model was
trained to read. One difference remains, as for any HF tokenizer: literal special-token strings in the
text ("</s>") become the special id in HF, characters in SentencePiece.

Import (`vocabulary_model`): a Hugging Face directory's vocabulary as a SentencePiece model file, which
the data layer (segment store, scorers) reads: its `tokenizer.model` when it has one, else a
SentencePiece model rebuilt from a unigram `tokenizer.json` (byte-level BPE tokenizers such as Llama 3's
have no SentencePiece form and are refused). The vocabulary must keep the framework's ids (pad 0, eos 1):
segments end in id 1 and every example starts after id 0.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
from typing import Any

from visual_priors.data import cache, vocab

TOKENIZER_MODEL = "tokenizer.model"
TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL_TOKENS_MAP = "special_tokens_map.json"
CONVERTED_MODEL = "converted_spm.model"  # written beside an imported tokenizer.json
_SPACE = "\u2581"  # "▁"
# sentencepiece_model.proto ModelProto.SentencePiece.Type
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6
_UNIGRAM, _BPE = 1, 2


def _proto(model_path: str | os.PathLike[str]):
  vocab._sentencepiece()  # pylint: disable=protected-access
  from sentencepiece import sentencepiece_model_pb2  # pylint: disable=import-outside-toplevel
  proto = sentencepiece_model_pb2.ModelProto()
  proto.ParseFromString(pathlib.Path(model_path).read_bytes())
  return proto


def _check_framework_ids(pieces: list[tuple[str, int]], where: str) -> None:
  """pieces: (text, type) by id. The framework's pipeline needs pad (control) 0, eos (control) 1, unk 2."""
  wanted = ((vocab.PAD_ID, "pad"), (vocab.EOS_ID, "eos"), (vocab.UNK_ID, "unk"))
  types = {vocab.PAD_ID: _CONTROL, vocab.EOS_ID: _CONTROL, vocab.UNK_ID: _UNKNOWN}
  bad = [f"id {i} ({name}) is {pieces[i][0]!r}" for i, name in wanted if len(pieces) <= i or pieces[i][1] != types[i]]
  if bad:
    raise ValueError(f"{where}: the vocabulary does not keep the framework's special ids (pad 0, eos 1, unk 2): "
                     f"{'; '.join(bad)}. Segments end in id 1 and every example starts after id 0, so such a "
                     "tokenizer cannot train or score here.")


def tokenizer_json(model_path: str | os.PathLike[str]) -> dict[str, Any]:
  """The `tokenizers` JSON of an identity-normalised unigram SentencePiece model (the framework's kind)."""
  proto = _proto(model_path)
  where = str(model_path)
  if proto.trainer_spec.model_type != _UNIGRAM:
    raise ValueError(f"{where}: only unigram SentencePiece models convert (this one has model_type "
                     f"{proto.trainer_spec.model_type}); train the vocabulary with model_type 'unigram'.")
  spec = proto.normalizer_spec
  if spec.name not in ("identity", "") or spec.precompiled_charsmap or spec.remove_extra_whitespaces:
    raise ValueError(f"{where}: normalizer {spec.name!r} (remove_extra_whitespaces={spec.remove_extra_whitespaces}) "
                     "is not the identity normalisation the framework uses; it has no exact tokenizers form here.")
  if proto.trainer_spec.treat_whitespace_as_suffix:
    raise ValueError(f"{where}: treat_whitespace_as_suffix is not supported.")
  pieces = [(p.piece, p.type) for p in proto.pieces]
  _check_framework_ids(pieces, where)
  special = {i: p.piece for i, p in enumerate(proto.pieces) if p.type in (_CONTROL, _UNKNOWN, _USER_DEFINED)}
  added = [{"id": i, "content": text, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
            "special": proto.pieces[i].type != _USER_DEFINED} for i, text in sorted(special.items())]
  normalizers = []
  if spec.add_dummy_prefix:
    normalizers.append({"type": "Prepend", "prepend": _SPACE})
  if spec.escape_whitespaces:
    normalizers.append({"type": "Replace", "pattern": {"String": " "}, "content": _SPACE})
  decoders = [{"type": "Replace", "pattern": {"String": _SPACE}, "content": " "}, {"type": "ByteFallback"},
              {"type": "Fuse"}]
  if spec.add_dummy_prefix:
    decoders.append({"type": "Strip", "content": " ", "start": 1, "stop": 0})
  bos = special[vocab.PAD_ID]
  return {
      "version": "1.0",
      "truncation": None,
      "padding": None,
      "added_tokens": added,
      "normalizer": {"type": "Sequence", "normalizers": normalizers},
      "pre_tokenizer": None,
      "post_processor": {
          "type": "TemplateProcessing",
          "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
          "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                   {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
          "special_tokens": {bos: {"id": bos, "ids": [vocab.PAD_ID], "tokens": [bos]}},
      },
      "decoder": {"type": "Sequence", "decoders": decoders},
      "model": {"type": "Unigram", "unk_id": vocab.UNK_ID,
                "vocab": [[p.piece, float(p.score)] for p in proto.pieces],
                "byte_fallback": bool(proto.trainer_spec.byte_fallback)},
  }


def write_hf_tokenizer(model_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                       model_max_length: int) -> list[str]:
  """Writes the four tokenizer files of a Llama tokenizer for `model_path` into `out_dir`; returns their names."""
  out_dir = pathlib.Path(out_dir)
  converted = tokenizer_json(model_path)
  pieces = {token["id"]: token["content"] for token in converted["added_tokens"]}
  pad, eos, unk = pieces[vocab.PAD_ID], pieces[vocab.EOS_ID], pieces[vocab.UNK_ID]
  shutil.copyfile(model_path, out_dir / TOKENIZER_MODEL)
  (out_dir / TOKENIZER_JSON).write_text(json.dumps(converted, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
  config = {
      "tokenizer_class": "PreTrainedTokenizerFast",
      "bos_token": pad, "eos_token": eos, "unk_token": unk, "pad_token": pad,
      "add_bos_token": True, "add_eos_token": False,
      "add_prefix_space": None, "legacy": True,  # the SentencePiece file's own dummy prefix, as tokenizer.json
      "clean_up_tokenization_spaces": False,
      "model_max_length": int(model_max_length),
      "padding_side": "left",
      "sp_model_kwargs": {},
      "added_tokens_decoder": {str(t["id"]): {k: v for k, v in t.items() if k != "id"}
                               for t in converted["added_tokens"]},
  }
  (out_dir / TOKENIZER_CONFIG).write_text(json.dumps(config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
  special = {"bos_token": pad, "eos_token": eos, "unk_token": unk, "pad_token": pad}
  (out_dir / SPECIAL_TOKENS_MAP).write_text(json.dumps(special, indent=2) + "\n", encoding="utf-8")
  return [TOKENIZER_MODEL, TOKENIZER_JSON, TOKENIZER_CONFIG, SPECIAL_TOKENS_MAP]


def _model_from_json(path: pathlib.Path, out: pathlib.Path) -> pathlib.Path:
  """A SentencePiece model equal to a unigram `tokenizer.json` (pieces, scores, byte fallback, dummy prefix)."""
  data = cache.read_json(path)
  model = data.get("model") or {}
  if model.get("type") != "Unigram":
    raise ValueError(f"{path}: a {model.get('type')!r} tokenizer has no SentencePiece form (only unigram "
                     "tokenizer.json files, as SentencePiece-derived Llama tokenizers write, import); "
                     "byte-level BPE vocabularies such as Llama 3's cannot be used by the data pipeline.")
  vocab._sentencepiece()  # pylint: disable=protected-access
  from sentencepiece import sentencepiece_model_pb2  # pylint: disable=import-outside-toplevel
  proto = sentencepiece_model_pb2.ModelProto()
  special = {t["id"]: t for t in data.get("added_tokens", [])}
  unk = model.get("unk_id")
  for index, (piece, score) in enumerate(model["vocab"]):
    entry = proto.pieces.add()
    entry.piece, entry.score = piece, float(score)
    if index == unk:
      entry.type = _UNKNOWN
    elif index in special:
      entry.type = _CONTROL if special[index].get("special", True) else _USER_DEFINED
    elif len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
      entry.type = _BYTE
    else:
      entry.type = _NORMAL
  # The dummy prefix: a Prepend normaliser (this module's export, transformers' legacy Llama form) or a
  # Metaspace pre-tokenizer that prepends (transformers' newer form).
  text = json.dumps(data.get("normalizer")) + json.dumps(data.get("pre_tokenizer"))
  dummy_prefix = '"Prepend"' in text or any(f'"prepend_scheme": "{s}"' in text for s in ("always", "first"))
  proto.trainer_spec.model_type = _UNIGRAM
  proto.trainer_spec.vocab_size = len(model["vocab"])
  proto.trainer_spec.byte_fallback = bool(model.get("byte_fallback"))
  proto.trainer_spec.unk_id = unk if unk is not None else -1
  proto.trainer_spec.pad_id, proto.trainer_spec.eos_id, proto.trainer_spec.bos_id = vocab.PAD_ID, vocab.EOS_ID, -1
  proto.normalizer_spec.name = "identity"
  proto.normalizer_spec.add_dummy_prefix = dummy_prefix
  proto.normalizer_spec.escape_whitespaces = True
  proto.normalizer_spec.remove_extra_whitespaces = False
  _check_framework_ids([(p.piece, p.type) for p in proto.pieces], str(path))
  out.write_bytes(proto.SerializeToString())
  return out


def vocabulary_model(source: str | os.PathLike[str], work_dir: str | os.PathLike[str] | None = None) -> pathlib.Path:
  """A SentencePiece model file for `source`: a .model file, or a HF directory (its `tokenizer.model`, else its
  unigram `tokenizer.json` rebuilt as `work_dir/converted_spm.model`); checked for the framework's ids."""
  source = pathlib.Path(source).expanduser()
  if source.is_file():
    model = source
  elif (source / TOKENIZER_MODEL).is_file():
    model = source / TOKENIZER_MODEL
  elif (source / TOKENIZER_JSON).is_file():
    out_dir = pathlib.Path(work_dir) if work_dir else source
    out_dir.mkdir(parents=True, exist_ok=True)
    return _model_from_json(source / TOKENIZER_JSON, out_dir / CONVERTED_MODEL)
  else:
    raise FileNotFoundError(f"{source} is neither a SentencePiece model nor a directory holding {TOKENIZER_MODEL} "
                            f"or {TOKENIZER_JSON}.")
  proto = _proto(model)
  _check_framework_ids([(p.piece, p.type) for p in proto.pieces], str(model))
  return model


def same_vocabulary(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
  """Whether two SentencePiece models encode alike: the same pieces (text, type, score) at the same ids and
  the same whitespace handling (byte-identical files trivially are)."""
  if cache.sha256_file(pathlib.Path(a)) == cache.sha256_file(pathlib.Path(b)):
    return True
  first, second = _proto(a), _proto(b)

  def signature(proto) -> tuple:
    spec = proto.normalizer_spec
    return ([(p.piece, p.type, round(p.score, 6)) for p in proto.pieces], proto.trainer_spec.model_type,
            proto.trainer_spec.byte_fallback, spec.add_dummy_prefix, spec.escape_whitespaces,
            spec.remove_extra_whitespaces, bytes(spec.precompiled_charsmap))

  return signature(first) == signature(second)
