"""Training: the loop, losses, metrics, checkpoints and distributed (DDP) set-up."""
