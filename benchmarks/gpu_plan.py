"""GPU-hours of each paper table, from step times measured on this machine's first GPU.

    python benchmarks/gpu_plan.py            # paper shapes on CUDA; tiny shapes on CPU (--tiny is the default there)
    python benchmarks/gpu_plan.py --tiny     # tiny shapes anywhere (a smoke run: its hours mean nothing)

Measured with randomly initialised models built from configs (no download):
- SFT: a Llama-3.2-3B-shaped causal LM at Table 6's settings: per-device batch 1 x accumulation 2, length 2048,
  fp32 master weights + bf16 autocast, AdamW, gradient checkpointing: seconds per optimizer step;
- reward scoring: an 8B Llama-shaped sequence classifier (Skywork-Reward-Llama-3.1-8B) in bf16, batch 16,
  PAIR_TOKENS tokens per (instruction, response): pairs per second;
- generation: the 3B in bf16, transformers `generate`, batch 8, every answer run to its token cap: tokens per second.

GPU-hours per table = the plan of its params file (`crowdselect_lib.preflight.plan`: trainings x optimizer steps
at world size 1 = examples / 2 per GPU-step, scoring pairs, answers at their token cap, IFD forward passes):
  training = steps x s/step x METHOD_COST[method]  (DPO: policy on chosen + rejected + a reference pass; LoRA:
  no optimizer states for the base; rough factors, not measured);
  scoring = pairs / pairs-per-s; IFD = forward passes / (pairs-per-s x 8 / 3.2) (a 3B forward, same length);
  generation = answer tokens / tokens-per-s (an upper bound: answers at their cap; a vLLM server is faster).
Embedding (jina-v3, 0.57B) and the LLM calls are left out (minutes, and not GPU work here).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crowdselect_lib.config import load_config  # noqa: E402
from crowdselect_lib.preflight import cells, plan  # noqa: E402

LLAMA_3B = dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=28, num_attention_heads=24,
                num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True, max_position_embeddings=8192)
LLAMA_8B = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False, max_position_embeddings=8192)
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=1024, tie_word_embeddings=True, max_position_embeddings=4096)
PAIR_TOKENS = 640                      # instruction (~150) + response (~450) + chat template
METHOD_COST = {"sft_full": 1.0, "sft_lora": 0.7, "dpo": 2.7, "simpo": 2.0, "orpo": 2.0}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def sft_step_seconds(shape: dict, length: int, device: str, steps: int, accum: int = 2) -> float:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**shape)).to(device)          # fp32 master weights
    model.gradient_checkpointing_enable()
    model.config.use_cache = False
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=device.startswith("cuda"))
    ids = torch.randint(0, shape["vocab_size"], (1, length), device=device)
    dtype = torch.bfloat16

    def step():
        for _ in range(accum):
            with torch.autocast(device_type=device.split(":")[0], dtype=dtype):
                loss = model(input_ids=ids, labels=ids).loss / accum
            loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()                                                             # warm-up (allocates optimizer states)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    out = (time.perf_counter() - t0) / steps
    del model, opt
    return out


def scoring_pairs_per_s(shape: dict, length: int, batch: int, device: str, reps: int) -> float:
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    cfg = LlamaConfig(**shape, num_labels=1, pad_token_id=0)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = LlamaForSequenceClassification(cfg).to(device=device, dtype=dtype).eval()
    ids = torch.randint(1, shape["vocab_size"], (batch, length), device=device)
    with torch.inference_mode():
        model(input_ids=ids)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            model(input_ids=ids)
        sync(device)
    out = reps * batch / (time.perf_counter() - t0)
    del model
    return out


def generation_tokens_per_s(shape: dict, prompt: int, new: int, batch: int, device: str) -> float:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = LlamaForCausalLM(LlamaConfig(**shape)).to(device=device, dtype=dtype).eval()
    ids = torch.randint(1, shape["vocab_size"], (batch, prompt), device=device)
    kw = dict(max_new_tokens=new, min_new_tokens=new, do_sample=False, pad_token_id=0, eos_token_id=None)
    with torch.inference_mode():
        model.generate(ids, **{**kw, "max_new_tokens": 4, "min_new_tokens": 4})
        sync(device)
        t0 = time.perf_counter()
        model.generate(ids, **kw)
        sync(device)
    out = batch * new / (time.perf_counter() - t0)
    del model
    return out


def table_hours(path: Path, sft_s: float, pairs_s: float, tok_s: float) -> dict:
    p = plan(cells(load_config(path)), world_size=1)
    train = sum(r.steps * sft_s * METHOD_COST.get(r.step.split()[-1], 1.0) for r in p.rows if r.step.startswith("train "))
    score = sum(r.count for r in p.rows if r.step == "reward scoring") / pairs_s
    ifd = sum(r.count for r in p.rows if r.step == "IFD scoring") / (pairs_s * 8 / 3.2)
    gen = sum(r.completion_tokens for r in p.rows if r.step.startswith("answer ")) / tok_s
    trainings = sum(r.count for r in p.rows if r.step.startswith("train "))
    return {"trainings": trainings, "train": train / 3600, "score": score / 3600, "ifd": ifd / 3600,
            "generate": gen / 3600, "total": (train + score + ifd + gen) / 3600}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny shapes (default without CUDA)")
    ap.add_argument("--steps", type=int, default=3, help="timed SFT optimizer steps")
    ap.add_argument("--tables", default="", help="comma-separated table numbers (default: every params/tableNN.yaml)")
    ap.add_argument("--params-dir", default=str(ROOT / "params"), help="folder of the tableNN.yaml files")
    args = ap.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tiny = args.tiny or device == "cpu"
    small, big = (TINY, TINY) if tiny else (LLAMA_3B, LLAMA_8B)
    length = 128 if tiny else 2048
    name = torch.cuda.get_device_name(0) if device == "cuda" else "CPU"
    print(f"device: {name}; shapes: {'tiny (timings mean nothing)' if tiny else 'Llama-3.2-3B / Llama-3.1-8B'}")
    sft_s = sft_step_seconds(small, length, device, args.steps)
    print(f"SFT (batch 1 x accumulation 2, length {length}, fp32 master + bf16 autocast): {sft_s:.3f} s/step")
    pairs_s = scoring_pairs_per_s(big, 64 if tiny else PAIR_TOKENS, 16, device, 3)
    print(f"reward scoring (batch 16 x {64 if tiny else PAIR_TOKENS} tokens): {pairs_s:,.1f} pairs/s")
    tok_s = generation_tokens_per_s(small, 32 if tiny else 256, 16 if tiny else 256, 8, device)
    print(f"generation (batch 8, transformers generate): {tok_s:,.1f} tokens/s")
    wanted = {f"table{int(t):02d}.yaml" for t in args.tables.split(",") if t}
    paths = [p for p in sorted(Path(args.params_dir).glob("table[0-9][0-9].yaml")) if not wanted or p.name in wanted]
    print(f"\n{'table':<8}{'trainings':>10}{'train h':>10}{'score h':>10}{'IFD h':>9}{'generate h':>12}{'total h':>10}")
    for path in paths:
        try:
            h = table_hours(path, sft_s, pairs_s, tok_s)
        except Exception as e:          # a params file the plan cannot read: say so, keep going
            print(f"{path.stem:<8} cannot plan: {type(e).__name__}: {str(e)[:100]}")
            continue
        print(f"{path.stem:<8}{h['trainings']:>10,}{h['train']:>10,.1f}{h['score']:>10,.1f}{h['ifd']:>9,.1f}"
              f"{h['generate']:>12,.1f}{h['total']:>10,.1f}")
    print("GPU-hours on one such GPU; tables sharing runs (2/11/12, 9/10, 3/14, 4/13) share them, so do not add up.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
