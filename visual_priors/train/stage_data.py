"""Stage data from files: caption pairs and LLaVA-format instruction data as train-data factories.

contrastive reads caption pairs as caption batches; align reads instruction data, or caption pairs
turned into one-turn conversations (`<image>` + ALIGN_PROMPT -> the caption, as LLaVA's alignment data
is); sft reads instruction data; blind reads it with every image withheld. Each `StageData` carries the
size of one epoch and an identity for the stage's manifest (the files and vocabulary, by sha256).
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from visual_priors.data import cache
from visual_priors.data.multimodal import chat, pipeline
from visual_priors.train import trainer

ALIGN_PROMPT = "Describe the image briefly."


@dataclasses.dataclass(frozen=True)
class StageData:
  train_data: Callable[[], trainer.DataIterator]
  num_examples: int
  identity: dict[str, Any]


def caption_conversations(records: Sequence[Mapping[str, Any]], prompt: str = ALIGN_PROMPT) -> list[dict[str, Any]]:
  """Caption pairs {"image", "caption"} as instruction records: `<image>\\n{prompt}` answered by the caption."""
  return [{"id": str(record.get("id", f"caption-{index}")), "image": record["image"],
           "conversations": [{"from": "human", "value": f"{chat.IMAGE_TOKEN}\n{prompt}"},
                             {"from": "gpt", "value": record["caption"]}]}
          for index, record in enumerate(records)]


def file_identity(paths: Sequence[str | pathlib.Path], vocab_path: str | pathlib.Path) -> dict[str, Any]:
  """What a manifest records of the data: each file and the vocabulary, with their sha256."""
  vocab_path = pathlib.Path(vocab_path).absolute()
  return {
      "files": {str(pathlib.Path(p).absolute()): cache.sha256_file(pathlib.Path(p)) for p in paths},
      "vocab": str(vocab_path),
      "vocab_sha256": cache.sha256_file(vocab_path),
  }


def stage_data(stage: str, records: Sequence[Mapping[str, Any]], *, vocab_path: str | pathlib.Path,
               batch_size: int, seq_len: int, image_size: int, num_visual_tokens: int = 0,
               system_prompt: str = chat.DEFAULT_SYSTEM_PROMPT, seed: int = 42, drop_unsupervised: bool = False,
               identity: Mapping[str, Any] | None = None) -> StageData:
  """The stage's repeating train iterator factory over `records` (caption pairs for contrastive, else
  instruction records), with `num_visual_tokens` image slots per image (MLLM stages)."""
  config = pipeline.MultimodalConfig(batch_size=batch_size, seq_len=seq_len, image_size=image_size, seed=seed,
                                     text_only=stage == "blind", drop_unsupervised=drop_unsupervised)
  identity = {**dict(identity or {}), "records": len(records)}
  if stage == "contrastive":
    dataset = pipeline.caption_dataset(records, vocab_path, config)
  else:
    if num_visual_tokens <= 0:
      raise ValueError(f"The {stage} stage's chat template needs num_visual_tokens > 0 (the MLLM's count).")
    chat_config = chat.ChatConfig(num_visual_tokens=num_visual_tokens, system_prompt=system_prompt)
    dataset = pipeline.instruct_dataset(records, chat.ChatTemplate(vocab_path, chat_config), config)
    identity["chat"] = dataclasses.asdict(chat_config)
  return StageData(train_data=lambda: iter(dataset), num_examples=len(records), identity=identity)
