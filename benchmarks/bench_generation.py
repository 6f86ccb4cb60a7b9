"""Benchmark: student-answer generation, the old static path against the one-pass path, same model and prompts.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_generation.py [--prompts 16] [--tokens 48] [--model M]

- static (before issue 20): questions in chunks of 16, each chunk in batches of `judge.batch_size` (8); every batch
  waits for its longest answer and every chunk for its slowest batch;
- one pass (now, `judge.answer_chunk: null`): every question in one call, batches of similar prompt length;
- ``--continuous``: transformers' own continuous batching (``model.generate_batch``), for a GPU. On this 2-core CPU
  it did not finish 16 prompts in 200 s with an explicit cache size (3 prompts with its defaults: 70 s), so it is
  off by default and the package does not use it (README "The real run": a vLLM server is the GPU path).

Prints completion tokens per second of each. On a CPU, which is compute-bound, the paths are close; on a GPU the
ratio is the point (issue 20: run it there with a 3B-shaped model). Model default: SmolLM2-135M-Instruct (offline).
"""
from __future__ import annotations

import argparse
import time

from crowdselect_lib.config import LLMConfig
from crowdselect_lib.llm import GenerationSettings, make_llm

TOPICS = ["the water cycle", "binary search", "the French revolution", "photosynthesis", "a haiku about rain",
          "TCP handshakes", "compound interest", "how vaccines work", "a limerick about cats", "black holes",
          "sorting algorithms", "the stock market", "volcanoes", "the immune system", "a short poem about autumn",
          "neural networks"]


def prompts(n: int) -> list[list[dict]]:
    """`n` one-turn questions of varied length (some ask for one line, some for a paragraph)."""
    out = []
    for i in range(n):
        ask = "in one sentence" if i % 3 == 0 else "in a short paragraph" if i % 3 == 1 else "step by step"
        out.append([{"role": "user", "content": f"Explain {TOPICS[i % len(TOPICS)]} {ask}."}])
    return out


def run(convs, settings, model: str, batch: int, chunk: int | None) -> tuple[float, int]:
    llm = make_llm(LLMConfig(backend="local", model=model, local_batch_size=batch))   # memory cache only
    t0, tokens = time.perf_counter(), 0
    step = chunk or len(convs)
    for start in range(0, len(convs), step):
        for r in llm.complete(convs[start:start + step], settings):
            tokens += int((r.meta.get("usage") or {}).get("completion_tokens") or 0)
    return time.perf_counter() - t0, tokens


def continuous(convs, settings, model: str) -> tuple[float, int]:
    from transformers import GenerationConfig

    from crowdselect_lib.models import shared_causal_lm

    tok, lm = shared_causal_lm(model)
    ids = [tok.apply_chat_template(c, add_generation_prompt=True, tokenize=True) for c in convs]
    ids = [x if isinstance(x, list) else x["input_ids"] for x in ids]
    gc = GenerationConfig(max_new_tokens=settings.max_new_tokens, do_sample=False, eos_token_id=tok.eos_token_id,
                          pad_token_id=tok.pad_token_id)
    t0 = time.perf_counter()
    out = lm.generate_batch(ids, generation_config=gc)
    return time.perf_counter() - t0, sum(len(o.generated_tokens) for o in out.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=48, help="max_new_tokens")
    ap.add_argument("--batch", type=int, default=8, help="judge.batch_size")
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--continuous", action="store_true", help="also transformers' generate_batch (GPU)")
    args = ap.parse_args()
    convs, settings = prompts(args.prompts), GenerationSettings(0.0, args.tokens)
    run(convs[:2], settings, args.model, args.batch, None)                 # load the model, warm up
    rows = [("static (chunks of 16, batches of %d)" % args.batch, *run(convs, settings, args.model, args.batch, 16)),
            ("one pass (batches of %d, length-sorted)" % args.batch,
             *run(convs, settings, args.model, args.batch, None))]
    if args.continuous:
        rows.append(("continuous (transformers generate_batch)", *continuous(convs, settings, args.model)))
    print(f"{args.model}: {args.prompts} prompts, <= {args.tokens} new tokens, greedy")
    for name, seconds, tokens in rows:
        print(f"  {name:<44} {tokens:>6} tokens in {seconds:6.1f} s = {tokens / seconds:6.1f} tok/s")


if __name__ == "__main__":
    main()
