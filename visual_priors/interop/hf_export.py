"""`export hf`: a finished run as a Hugging Face Llama directory, plus the projector and vision tower of an MLLM.

What it writes (loads with `AutoModelForCausalLM.from_pretrained(DIR)` and `AutoTokenizer.from_pretrained(DIR)`,
no custom code):

  config.json                 LlamaConfig (`visual_priors/models/hf_llama.py`): sizes, heads, KV heads,
                              rope_theta, rms_norm_eps, tie_word_embeddings, vocab, bos 0 / eos 1 / pad 0
  model.safetensors           the LM's tensors in HF names and layouts; above --max-shard-bytes,
                              model-0000i-of-0000n.safetensors with model.safetensors.index.json
  generation_config.json      bos / eos ids (no pad id: see `export_hf`)
  tokenizer.model, tokenizer.json, tokenizer_config.json, special_tokens_map.json
                              the run's SentencePiece vocabulary (`visual_priors/data/hf_tokenizer.py`)
  visual_priors_export.json   what was exported: source run, stage, step, dtype, files, sha256 of the vocabulary

An MLLM run (align, blind, sft) writes its LM (`llm/...`) as above and beside it:

  mm_projector.safetensors    the projector's parameters (`proj/...`)
  vision_tower.safetensors    the vision tower's parameters (`img/...`)
  mllm_config.json            {"format": "visual_priors.mllm/1", "mllm": MLLMConfig fields (vision tower,
                              projector kind, visual tokens, resampling), "files": {...}}

Projector and tower tensors keep the framework's '/'-joined paths and Flax layouts (kernels (in, out),
convolution kernels (h, w, in, out)), in the export dtype, so `MLLMConfig.from_dict(mllm)` rebuilds the
modules and `nnx.replace_by_pure_dict` takes the arrays; no other library defines this model.

Streaming: the checkpoint is read with orbax a group of tensors at a time (at most `GROUP_BYTES`) and each
tensor is written as it arrives (offsets planned from the shapes first), so host memory stays near one
group, whatever the model's size. float32 export is exact (import gives back the same bits); bfloat16
rounds to nearest even. The directory is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from visual_priors.data import cache, hf_tokenizer
from visual_priors.models import hf_llama, safetensors_io
from visual_priors.models.decoder import DecoderConfig
from visual_priors.models.mllm import MLLMConfig
from visual_priors.train import upstream as upstream_lib

EXPORT_ORDER = ("sft", "blind", "align", "pretrain")  # a runner run exports the last of these it finished
DTYPES = ("float32", "bfloat16", "float16")
GROUP_BYTES = 1 << 30  # tensors restored from the checkpoint together (host memory bound of the export)
EXPORT_FILE = "visual_priors_export.json"
MLLM_FILE = "mllm_config.json"
MLLM_FORMAT = "visual_priors.mllm/1"
RUN_FILE = "run.json"


def resolve_run(source: str | pathlib.Path, stage: str | None = None,
                stages: Sequence[str] = EXPORT_ORDER) -> upstream_lib.UpstreamRun:
  """The trainer run behind `source`: a trainer run directory (its manifest names a stage), a runner stage
  directory (`<root>/stages/<stage>/<key>`), or a runner run (`<root>/runs/<run_id>`: `stage` if given, else
  the last of `stages` it finished)."""
  from visual_priors.experiment import directories  # pylint: disable=import-outside-toplevel

  path = pathlib.Path(source).expanduser().absolute()
  if (path / RUN_FILE).is_file():
    record = cache.read_json(path / RUN_FILE)
    finished = {name: info for name, info in record.get("stages", {}).items()
                if info.get("status") in ("done", "cached")}
    wanted = [stage] if stage else list(stages)
    chosen = next((name for name in wanted if name in finished), None)
    if chosen is None:
      raise ValueError(f"Run {path.name} has no finished {' or '.join(wanted)} stage (finished: "
                       f"{', '.join(finished) or 'none'}).")
    recorded = pathlib.Path(finished[chosen]["dir"])
    # The stage directory under this runs root, <root>/stages/<stage>/<key>, wins: a moved or copied root
    # reads its own stages, never the original's; the recorded one only where this root lacks it.
    own = path.parent.parent / "stages" / chosen / recorded.name
    path = own if own.is_dir() or not recorded.is_dir() else recorded
  manifest_path = path / upstream_lib.MANIFEST
  if manifest_path.is_file():
    manifest = cache.read_json(manifest_path)
    if "outputs" in manifest and "key" in manifest:  # a runner stage directory
      done = directories.read_done(path, manifest["key"])
      run_dir = (done or {}).get("outputs", {}).get("run")
      if not run_dir:
        raise ValueError(f"Stage {path} ({manifest.get('stage')}) has no trained model to export.")
      path = pathlib.Path(run_dir)
  return upstream_lib.read_run(path, "export", upstream_lib.MODEL_STAGES)


def _seq_len(manifest: dict[str, Any]) -> int:
  config = manifest.get("config") or {}
  return int(config.get("seq_len") or (config.get("train") or {}).get("seq_len") or 2048)


def _write_group(run: upstream_lib.UpstreamRun, items: Sequence[tuple[str, str, Callable[[np.ndarray], np.ndarray]]],
                 stored: dict[str, tuple[tuple[int, ...], np.dtype]], writer: safetensors_io.ShardedWriter,
                 dtype: np.dtype) -> None:
  """Restores the group's tensors (path, output name, layout change) from the checkpoint and writes each."""
  device = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
  targets = {path: jax.ShapeDtypeStruct(stored[path][0], stored[path][1], sharding=device) for path, _, _ in items}
  values = upstream_lib.restore_parameters(run, targets, {"": ""})
  for path, name, layout in items:
    value = np.asarray(values.pop(path))
    writer.write(name, np.ascontiguousarray(layout(value), dtype=dtype))
    del value


def _stream(run: upstream_lib.UpstreamRun, items: Sequence[tuple[str, str, Callable[[np.ndarray], np.ndarray]]],
            stored: dict[str, tuple[tuple[int, ...], np.dtype]], writer: safetensors_io.ShardedWriter,
            dtype: np.dtype) -> None:
  group, used = [], 0
  for item in items:
    shape, stored_dtype = stored[item[0]]
    size = int(np.prod(shape)) * stored_dtype.itemsize
    if group and used + size > GROUP_BYTES:
      _write_group(run, group, stored, writer, dtype)
      group, used = [], 0
    group.append(item)
    used += size
  if group:
    _write_group(run, group, stored, writer, dtype)


def _check_stored(stored: dict[str, tuple[tuple[int, ...], np.dtype]], wanted: dict[str, tuple[int, ...]],
                  run: upstream_lib.UpstreamRun) -> None:
  problems = [f"missing {path}" for path in wanted if path not in stored]
  problems += [f"{path}: stored {stored[path][0]}, the model config says {shape}" for path, shape in wanted.items()
               if path in stored and tuple(stored[path][0]) != tuple(shape)]
  if problems:
    raise ValueError(f"The checkpoint of {run.directory} does not match its manifest's model: "
                     f"{'; '.join(problems[:8])}.")


def export_hf(source: str | pathlib.Path, out_dir: str | pathlib.Path, *, dtype: str = "float32",
              stage: str | None = None, vocab: str | pathlib.Path | None = None,
              max_shard_bytes: int = safetensors_io.DEFAULT_MAX_SHARD_BYTES,
              log: Callable[[str], None] = print) -> dict[str, Any]:
  """Writes the HF directory of `source` (see the module docstring) to `out_dir`; returns its record."""
  if dtype not in DTYPES:
    raise ValueError(f"--dtype {dtype!r} is not one of {', '.join(DTYPES)}.")
  started = time.perf_counter()
  target = np.dtype(jax.numpy.dtype(dtype))
  run = resolve_run(source, stage)
  manifest = run.manifest
  mllm = None
  if run.manifest["stage"] in upstream_lib.MLLM_STAGES:
    mllm = MLLMConfig.from_dict(manifest["model"]["mllm"])
    llm, prefix = mllm.llm, "llm/"
  else:
    llm, prefix = DecoderConfig(**manifest["model"]), ""
  if vocab is None:
    vocab, _ = upstream_lib.recorded_vocabulary(manifest)
  if vocab is None or not pathlib.Path(vocab).is_file():
    raise FileNotFoundError(f"The vocabulary of {run.directory} ({vocab or 'not recorded'}) is not on this machine; "
                            "pass --vocab PATH to its SentencePiece model.")
  stored = upstream_lib.stored_variables(run)
  lm_tensors = hf_llama.tensors(llm)
  _check_stored(stored, {prefix + t.path: t.shape for t in lm_tensors}, run)
  log(f"export {run.manifest['stage']} run {run.directory} (step {run.manifest['step']}) as {dtype} to {out_dir}")
  out_dir = pathlib.Path(out_dir).expanduser().absolute()
  with cache.atomic_directory(out_dir) as tmp:
    writer = safetensors_io.ShardedWriter(tmp, {t.hf_name: (t.hf_shape, target) for t in lm_tensors}, max_shard_bytes)
    items = [(prefix + t.path, t.hf_name, lambda value, t=t: hf_llama.to_hf(t, value)) for t in lm_tensors]
    _stream(run, items, stored, writer, target)
    files = writer.close()
    config = hf_llama.hf_config(llm, max_position_embeddings=_seq_len(manifest), torch_dtype=dtype)
    cache.write_json_atomic(tmp / "config.json", config)
    # No pad id here: BOS is id 0 = pad, and `generate(input_ids)` without an attention mask would otherwise
    # infer one that hides the BOS (transformers masks pad ids when the pad differs from eos).
    cache.write_json_atomic(tmp / "generation_config.json", {
        "bos_token_id": hf_llama.BOS_ID, "eos_token_id": hf_llama.EOS_ID})
    files += ["config.json", "generation_config.json"]
    files += hf_tokenizer.write_hf_tokenizer(vocab, tmp, model_max_length=_seq_len(manifest))
    if mllm is not None:
      parts = {}
      for part, stem in (("proj/", "mm_projector"), ("img/", "vision_tower")):
        paths = sorted(path for path in stored if path.startswith(part))
        part_writer = safetensors_io.ShardedWriter(tmp, {p: (stored[p][0], target) for p in paths}, max_shard_bytes,
                                                   stem=stem)
        _stream(run, [(p, p, lambda value: value) for p in paths], stored, part_writer, target)
        parts[stem] = part_writer.close()
        files += parts[stem]
      cache.write_json_atomic(tmp / MLLM_FILE, {
          "format": MLLM_FORMAT, "mllm": mllm.to_dict(), "dtype": dtype,
          "files": {"lm": "config.json", "projector": parts["mm_projector"], "vision_tower": parts["vision_tower"]},
          "layout": "framework '/'-joined parameter paths, Flax layouts (kernels (in, out))"})
      files.append(MLLM_FILE)
    record = {
        "source": str(run.directory), "stage": run.manifest["stage"], "step": run.manifest["step"],
        "dtype": dtype, "model": dataclasses.asdict(llm), "vocab": str(vocab),
        "vocab_sha256": cache.sha256_file(pathlib.Path(vocab)), "files": sorted(files + [EXPORT_FILE]),
        "parameters": int(sum(np.prod(t.hf_shape) for t in lm_tensors)),
    }
    cache.write_json_atomic(tmp / EXPORT_FILE, record)
  seconds = time.perf_counter() - started
  log(f"  wrote {len(record['files'])} files, {record['parameters']:,} LM parameters, in {seconds:.1f} s")
  return {**record, "out": str(out_dir), "seconds": seconds}
