"""Run by tests/test_training.py under torchrun: train a few steps, print a parameter checksum per rank."""

import json
import sys

import torch

from core.training.trainer import TrainConfig, Trainer

cfg = TrainConfig.from_dict(json.loads(sys.argv[1]))
trainer = Trainer(cfg, log=lambda m: None)
history = trainer.train()
checksum = sum(float(p.double().sum()) for p in trainer.model.parameters())
print(json.dumps({"rank": trainer.rank, "world": trainer.world, "checksum": checksum,
                  "losses": [h["total"] for h in history if "total" in h]}), flush=True)
torch.distributed.destroy_process_group()
