"""The trainer: AMP, resume, logging and DDP around one Agent (checkpoint format and device choice
sit one floor down, in robot_offrl.checkpoint and robot_offrl.device, shared with the runtime)."""
