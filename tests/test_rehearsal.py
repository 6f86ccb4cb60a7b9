"""Rehearsal tier (issue 20): the real (non-demo) path of Table 2, end to end, on tiny local stand-ins of the real
architectures, driven like a lab would drive it: `params/table02.yaml` plus overrides that point every model and
folder at local copies and shrink the sizes.

- a Magpie-schema zoo (parquet shards with one struct column per generator model, `zoo.data_dir`);
- sequence-classification reward models shaped like Skywork-Reward-Llama-3.1-8B (`LlamaForSequenceClassification`)
  and Skywork-Reward-Gemma-2-27B (`Gemma2ForSequenceClassification`), under `scoring.model_dir`;
- students shaped like Llama-3.2-3B-Instruct (`LlamaForCausalLM`, the Llama-3 chat template with its header and
  end-of-turn special tokens) and Qwen2.5-3B-Instruct (`Qwen2ForCausalLM`, the ChatML template), 2 layers, random;
- a local OpenAI-compatible judge (tests/fake_openai.py); MT-Bench and Arena-Hard from the reference data.

Preflight checks the folders and plans the run first; the chapters' own library calls then run in chapter order, in one process (papermill would start a kernel per chapter
and cell, well over CI's budget); the report chapter's calls then render Table 2.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

import crowdselect_lib as cs
from crowdselect_lib import pipeline
from crowdselect_lib.preflight import cells as preflight_cells
from crowdselect_lib.preflight import check_bench_dir, check_zoo_dir, plan
from crowdselect_lib.reporting import cell_configs
from fake_openai import FakeOpenAI
from tests.conftest import REPO

pytestmark = pytest.mark.rehearsal

KEY_ENV = "REHEARSAL_JUDGE_KEY"
SERVED = "rehearsal-judge-server"   # what the local judge says it served (a mismatch is a WARN, issue 20)
ZOO_MODELS = ["gemma-2-2b-it", "gemma-2-9b-it", "Meta-Llama-3-8B-Instruct", "Meta-Llama-3-70B-Instruct",
              "Qwen2.5-3B-Instruct", "Qwen2.5-7B-Instruct", "Qwen2.5-72B-Instruct", "Phi-3-mini-128k-instruct"]
N_ROWS = 40
ROWS = ["base", "random", "difficulty_top", "crowdselect"]

# Llama-3.2-Instruct's template, tools left out: header tokens, the pinned knowledge/today lines, <|eot_id|>.
LLAMA32_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if not date_string is defined %}{%- set date_string = \"26 Jul 2024\" %}{%- endif %}"
    "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content']|trim %}"
    "{%- set messages = messages[1:] %}{%- else %}{%- set system_message = \"\" %}{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
    "{{- 'Cutting Knowledge Date: December 2023\\n' }}{{- 'Today Date: ' + date_string + '\\n\\n' }}"
    "{{- system_message }}{{- '<|eot_id|>' }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim"
    " + '<|eot_id|>' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}")
# Qwen2.5-Instruct's ChatML template, tools left out: its default system prompt, <|im_start|> / <|im_end|>.
QWEN25_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    "<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}"
    "{%- if (message.role == 'user') or (message.role == 'system' and not loop.first) or message.role == 'assistant' %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")


# The pre-tokenizer split of Llama 3 (and Qwen2): newlines are their own pre-tokens, so a prompt ending in
# "<|end_header_id|>\n\n" stays a token prefix of prompt + answer (GPT-2's split, SmolLM2's, merges "\n" into the answer).
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                r"\s*[\r\n]+|\s+(?!\S)|\s+")


def _tokenizer(special: list[str], template: str, bos: str | None, eos: str, pad: str):
    """SmolLM2's BPE cut to 4,096 tokens (the tiny student's, `models.truncated_bpe`) with Llama 3's pre-tokenizer
    split and the family's special tokens."""
    from tokenizers import Regex, pre_tokenizers

    tok = cs.models.load_tokenizer("tiny-llama")
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.add_special_tokens({"additional_special_tokens": special})
    tok.bos_token, tok.eos_token, tok.pad_token = bos, eos, pad
    tok.chat_template = template
    return tok


def llama32_student(out):
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _tokenizer(["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                      "<|eot_id|>", "<|finetune_right_pad_id|>"], LLAMA32_TEMPLATE, "<|begin_of_text|>",
                     "<|eot_id|>", "<|finetune_right_pad_id|>")
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                      tie_word_embeddings=True, rope_theta=500000.0, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    return _save(LlamaForCausalLM(cfg), tok, out)


def qwen25_student(out):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = _tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], QWEN25_TEMPLATE, None, "<|im_end|>",
                     "<|endoftext|>")
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                      tie_word_embeddings=True, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    return _save(Qwen2ForCausalLM(cfg), tok, out)


def reward_model(out, cls_name: str):
    """A Skywork-shaped sequence classifier (one score) on a Llama-3-style tokenizer that adds BOS."""
    import transformers
    from test_models import llama3_style_tokenizer

    tok = llama3_style_tokenizer()
    kind = {"Llama": "LlamaConfig", "Gemma2": "Gemma2Config"}[cls_name]
    cfg = getattr(transformers, kind)(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                                      max_position_embeddings=512, num_labels=1, pad_token_id=tok.pad_token_id,
                                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(1)
    return _save(getattr(transformers, f"{cls_name}ForSequenceClassification")(cfg), tok, out)


def _save(model, tok, out):
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def magpie_zoo(folder, n: int = N_ROWS, seed: int = 0):
    """Two parquet shards of the Magpie-100K-Generator-Zoo schema: uuid, instruction, and per generator a struct
    ``Magpie-Align/<model>`` {content, <reward model>: score} carrying the three reward models' fields."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    topics = ["sort a list in Python", "the causes of rain", "a haiku about autumn", "compound interest",
              "the French revolution", "a cover letter", "prime numbers", "a healthy breakfast"]
    data = {"uuid": [f"u{i:03d}" for i in range(n)],
            "instruction": [f"Explain {topics[i % len(topics)]} (case {i})." for i in range(n)]}
    for j, m in enumerate(ZOO_MODELS):
        quality = rng.normal(j * 0.1, 1.0, n)
        data[f"Magpie-Align/{m}"] = [{"content": f"{m} answers case {i}: " + "detail " * (1 + (i + j) % 5),
                                      "ArmoRM-Llama3-8B-v0.1": float(q / 10),
                                      "Skywork-Reward-Llama-3.1-8B": float(q),
                                      "Skywork-Reward-Gemma-2-27B": float(q + rng.normal(0, 0.3))}
                                     for i, q in enumerate(quality)]
    folder.mkdir(parents=True)
    table = pa.table(data)
    pq.write_table(table.slice(0, n // 2), folder / "train-00000-of-00002.parquet")
    pq.write_table(table.slice(n // 2), folder / "train-00001-of-00002.parquet")
    return folder


def judge_reply(body):
    """A judge that reads the answers: MT-Bench rating 7, Arena-Hard A=B (so every score is the fake judge's)."""
    if "Assistant A" in body["messages"][0]["content"]:
        return "Both are similar. My final verdict is tie: [[A=B]]"
    return "The answer is passable. Rating: [[7]]"


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory):
    root = tmp_path_factory.mktemp("rehearsal")
    rms = root / "reward_models"
    reward_model(rms / "Skywork-Reward-Llama-3.1-8B", "Llama")
    reward_model(rms / "Skywork-Reward-Gemma-2-27B", "Gemma2")
    return {"root": root, "zoo": magpie_zoo(root / "magpie"), "reward_models": rms,
            "llama": llama32_student(root / "students" / "Llama-3.2-3B-Instruct"),
            "qwen": qwen25_student(root / "students" / "Qwen2.5-3B-Instruct")}


def lab_params(s, shared_data, judge_url) -> tuple:
    """What a lab writes to run Table 2 on its own copies of the data and models: a params file over
    params/table02.yaml naming its folders and students, and ``--set KEY=VALUE`` lines (those of `pipeline table`)
    shrinking the run to CI size. Returns (params file, overrides as `parse_sets` reads the --set lines)."""
    from crowdselect_lib.config import parse_sets

    params = {"base": str(REPO / "params" / "table02.yaml"),
              "run": {"root": str(s["root"] / "runs")},
              "zoo": {"data_dir": str(s["zoo"])},
              "scoring": {"reward_models": ["Skywork-Reward-Llama-3.1-8B", "Skywork-Reward-Gemma-2-27B"],
                          "model_dir": str(s["reward_models"]), "score_all": True},
              "baselines": {"tokenizer": str(s["llama"])},
              "training": {"student": str(s["llama"])},
              "judge": {"judge_base_url": judge_url, "judge_api_key_env": KEY_ENV, "confirm_cost": True,
                        "data_dir": str(shared_data), "anchor": str(s["llama"])},
              "tables": {"grid": [{"name": "llama32_3b_instruct", "label": "Llama-3.2-3B-Instruct",
                                   "overrides": {"training.student": str(s["llama"])}},
                                  {"name": "qwen25_3b_instruct", "label": "Qwen2.5-3B-Instruct",
                                   "overrides": {"training.student": str(s["qwen"])}}]}}
    path = s["root"] / "my_table02.yaml"
    path.write_text(json.dumps(params, indent=1))        # JSON is YAML
    sets = ["scoring.verify_sample=16", "scoring.max_length=64", "scoring.batch_size=32", "scoring.dtype=float32",
            "embedding.model=all-MiniLM-L6-v2", "embedding.task=null", "embedding.trust_remote_code=false",
            "embedding.pooling=model", "clustering.n_clusters=2", "clustering.n_init=2", "selection.k=8",
            "baselines.methods=[random]", "training.seeds=[42]", "training.max_steps=1",
            "training.global_batch_size=2", "training.warmup_steps=0", "training.max_length=128",
            "training.learning_rate=1.0e-3", "judge.n_questions=2", "judge.mt_bench_max_new_tokens=6",
            "judge.arena_hard_max_new_tokens=6", "judge.n_bootstrap=10", f"tables.rows=[{', '.join(ROWS)}]"]
    return path, parse_sets(sets)


def chapters(run, cfg) -> dict:
    """Chapters 01-08 of one grid cell: the library calls the notebooks make, in order."""
    zoo = cs.zoo.load_run_zoo(run, cfg)                                         # 01
    scored = cs.scoring.score_zoo(run, cfg, zoo)                                # 02: both reward-model shapes
    cs.scoring.sample_check(run, cfg)
    metrics = cs.metrics.load_run_metrics(run, cfg)                             # 03
    clusters = cs.clustering.load_run_clusters(run, cfg)                        # 04
    tables, _ = cs.selection.run_selections(run, cfg)                           # 05
    cs.baselines.run_baselines(run, cfg, cs.baselines.methods_of(cfg, "rule", "embedding"))   # 06
    cs.training.train_all(run, cfg, methods=cs.training.SFT_METHODS)             # 07
    scores = cs.judge.run_judging(run, cfg)                                      # 08
    return {"zoo": zoo, "scored": scored, "metrics": metrics, "clusters": clusters, "tables": tables,
            "scores": scores}


def test_table2_real_path_on_tiny_stand_ins(stand_ins, shared_data, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-rehearsal")
    with FakeOpenAI(replies=judge_reply, model=SERVED, max_requests=2000, lifetime_s=900) as judge_srv:
        params_file, sets = lab_params(stand_ins, shared_data, judge_srv.base_url)
        cfg = cs.load_config(params_file, sets)
        assert not cfg.run.offline_demo and cfg.zoo.source == "magpie" and cfg.judge.judge == "llm"
        # preflight first, as a lab would: the folders pass their loaders' schemas, the plan has the real zoo size
        # and only the trainings Table 2 prints, and the cost gates are open
        check, size = check_zoo_dir(cfg)
        assert check.status == "OK" and size == (N_ROWS, len(ZOO_MODELS))
        assert [c.status for c in check_bench_dir(cfg)] == ["OK", "OK"]
        p = plan(preflight_cells(cfg), zoo_sizes={cfg.zoo.data_dir: size})
        assert p.row("embedding").count == N_ROWS
        assert p.row("train sft_full").count == (len(ROWS) - 1) * 2          # 3 printed subsets x 2 students x 1 seed
        pipeline.check_gates(cfg)
        run = cs.Run.from_config(cfg)
        cells = cell_configs(cfg)
        out = {name: chapters(run, ccfg) for name, ccfg in cells.items()}
        # 09: the report chapter's calls
        scores = cs.reporting.collect_scores(run, cfg)
        results = {t: cs.reporting.build_table(cfg, t, scores) for t in cs.reporting.tables_to_render(cfg)}
        paper = cs.reporting.paper_numbers(version=cfg.tables.version)
        cs.reporting.write_tables(run, cfg, results, paper, cs.reporting.paper_numbers(version="v1"))
        manifest_line = cs.reporting.write_manifest(run, cfg, params_file)
    first = out["llama32_3b_instruct"]
    # the Magpie zoo, scored by both reward-model shapes on every row
    assert first["zoo"].scores("Skywork-Reward-Llama-3.1-8B").shape == (N_ROWS, len(ZOO_MODELS))
    for rm in ("Skywork-Reward-Llama-3.1-8B", "Skywork-Reward-Gemma-2-27B"):
        rescored = first["scored"].scores(rm)
        assert rescored.shape == (N_ROWS, len(ZOO_MODELS)) and np.isfinite(rescored.to_numpy()).all()
    assert len(first["tables"]["crowdselect"]) == cfg.selection.k
    # both students trained on every printed row
    for name, ccfg in cells.items():
        systems = cs.training.trained_systems(run, ccfg)
        assert sorted(systems["subset"]) == sorted(ROWS[1:]) and systems["done"].all(), name
    # ... and saved with their families' chat templates and end-of-turn tokens
    for name, opening, eot in (("llama32_3b_instruct", "<|start_header_id|>assistant<|end_header_id|>\n\n",
                                "<|eot_id|>"), ("qwen25_3b_instruct", "<|im_start|>assistant\n", "<|im_end|>")):
        tok = cs.models.load_tokenizer(cs.training.trained_systems(run, cells[name])["path"].iloc[0])
        chat = [{"role": "user", "content": "Explain rain."}]
        prompt = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        assert prompt.endswith(opening) and tok.eos_token == eot, (name, prompt)
        full = tok.apply_chat_template([*chat, {"role": "assistant", "content": "Clouds cool."}], tokenize=False)
        ids, full_ids = (tok(t, add_special_tokens=False)["input_ids"] for t in (prompt, full))
        assert full_ids[:len(ids)] == ids, name        # trained on the context it answers in
    # every judged number is the fake judge's: MT-Bench 7.0, Arena-Hard 50 (ties against the anchor)
    judged = pd.concat([o["scores"] for o in out.values()], ignore_index=True)
    assert judge_srv.served > 0 and set(judged["served_model"]) == {SERVED}
    mt = scores[scores["benchmark"] == "mt_bench"]
    arena = scores[scores["benchmark"] == "arena_hard"]
    assert (mt["score"] == 7.0).all() and (arena["score"] == 50.0).all()
    # Table 2: a row per (student, benchmark), a column per printed subset, every number from the judge server
    t2 = pd.read_csv(run.dir / "tables" / "table02.csv", dtype={"table": str})
    ours = t2[t2["source"] == "judge openai:deepseek-ai/DeepSeek-V3"]
    assert len(ours) == len(t2) == 2 * 2 * len(ROWS)
    students = ["Llama-3.2-3B-Instruct", "Qwen2.5-3B-Instruct"]
    assert set(t2["row"]) == {f"{s} / {b}" for s in students for b in ("MT-Bench", "Arena-Hard")}
    assert t2.groupby("row")["column"].apply(list).map(len).eq(len(ROWS)).all()
    assert (t2.loc[t2["row"].str.endswith("MT-Bench"), "value"] == 7.0).all()
    assert (t2.loc[t2["row"].str.endswith("Arena-Hard"), "value"] == 50.0).all()
    # every system's judgments came back valid (2 MT-Bench questions x 2 turns); identical requests (tiny random
    # students repeat answers) were sent once
    # (18 rows: 4 systems x 2 benchmarks per student, and the anchor's in the Qwen cell too)
    assert len(judged) == 18 and (judged["n_failed"] == 0).all() and (judged["n_valid"] == 4).all()
    sent = [json.dumps(b["messages"], sort_keys=True) for b in judge_srv.served_bodies]
    assert 0 < len(sent) == len(set(sent))
    # the manifest names the model the judge server said it served, per cell (not only the one asked for)
    assert manifest_line.endswith(f"judge served {SERVED}")
    manifest = json.loads((run.dir / "tables" / "manifest_2.json").read_text())
    assert [c["judge_served"] for c in manifest["cells"].values()] == [[SERVED], [SERVED]]
