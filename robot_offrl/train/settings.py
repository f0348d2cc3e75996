"""The trainer's declaration of which of its settings change what a run trains.

Resume and experiment reuse both compare a saved run's config with the wanted one; the keys below
are left out of that comparison because they say where a run lives or how it is executed or
reported, never what it learns. Every key of ``TrainerConfig`` (train/config.py) is classified here,
one way or the other, and ``tests/train/test_train_foundations.py`` fails when a new trainer key is
not, so the list can no longer go stale in a caller (sim's experiment reuse reads it from here).
"""

from __future__ import annotations

# Where a run and its data live and how it is executed or reported (device, logging, checkpoint
# cadence, resume options): never what it trains. A copied run folder or a GPU run continued on a CPU
# is the same run.
RUN_PLACE_KEYS = frozenset({
    "out", "data", "resume", "trainer.device", "trainer.amp", "trainer.compile",
    "trainer.compile_backend", "trainer.num_workers", "trainer.cache_in_ram", "trainer.log_every",
    "trainer.val_every", "trainer.val_batches", "trainer.checkpoint_every", "trainer.keep_checkpoints",
    "trainer.progress", "trainer.resume_fallback", "trainer.resume_changes",
    "trainer.optimizer_impl",  # fused / foreach / plain AdamW: the same update, executed differently
    "trainer.conv_weight_grad",  # how conv1d weight gradients are computed: the same gradient
})
# The trainer keys that do change what is trained (compared on resume and on experiment reuse).
TRAINED_KEYS = frozenset({
    "trainer.steps", "trainer.batch_size", "trainer.lr", "trainer.weight_decay", "trainer.betas",
    "trainer.warmup_steps", "trainer.grad_clip", "trainer.grad_clip_mode", "trainer.ema_power",
    "trainer.ema_max_decay", "trainer.ema_min_decay", "trainer.ema_inv_gamma", "trainer.ema_update_after_step",
    "trainer.val_fraction",
})
# On resume trainer.steps may differ too: it is how a run is extended (the cosine schedule is then
# stretched over the new length).
RESUME_IGNORED = RUN_PLACE_KEYS | {"trainer.steps"}
