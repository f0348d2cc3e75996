"""The trainer: devices, AMP, checkpoints, resume, logging and DDP around one Agent."""
