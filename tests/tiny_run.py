"""The tiny experiment chain the runner, fault and sharded-evaluation tests share: nano LM, vit-nano, a few steps."""

# Settings on top of config.apply_local: each training stage runs a handful of steps on generated data.
TINY_RUN = {
    "pretrain.token_budget": 6 * 8 * 32, "pretrain.batch_size": 8, "pretrain.seq_len": 32, "pretrain.warmup_steps": 1,
    "vision.contrastive.steps": 3, "vision.contrastive.batch_size": 8,
    "adapt.data.generated.n_captions": 16, "adapt.data.generated.n_instruct": 24,
    "adapt.data.generated.n_eval_per_benchmark": 2,
    "adapt.align.steps": 2, "adapt.align.batch_size": 8, "adapt.align.num_visual_tokens": 4,
    "adapt.align.seq_len": 128, "adapt.sft.steps": 2, "adapt.sft.batch_size": 8, "adapt.sft.seq_len": 128,
    "runtime.checkpoint_every_steps": 2, "runtime.log_every_steps": 1,
}
