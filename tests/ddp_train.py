"""Run by tests/test_realrun.py under ``torchrun --nproc_per_node 2`` (gloo on CPU): two DDP ranks train tiny-llama
for 2 steps with `training.train` into argv[1]; each rank then writes ``rank<N>.json`` (no hang at save)."""
import json
import os
import sys

from crowdselect_lib.config import TrainingConfig
from crowdselect_lib.training import train

out = sys.argv[1]
cfg = TrainingConfig(student="tiny-llama", learning_rate=1e-2, per_device_batch_size=1, global_batch_size=2,
                     max_length=64, warmup_steps=0, logging_steps=1, mixed_precision="no", seeds=[42], max_steps=2)
rows = [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                      {"role": "assistant", "content": f"The answer is {2 * i}."}]} for i in range(4)]
res = train(cfg, "sft_full", rows, out)
with open(os.path.join(out, f"rank{os.environ['RANK']}.json"), "w") as fh:
    json.dump({"steps": res.steps, "world_size": res.batch["world_size"]}, fh)
