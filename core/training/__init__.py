"""Training: dataset of clips, losses, the dense -> sparse trainer."""
