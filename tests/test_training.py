"""Student fine-tuning (appendix B.2, Table 6, Table 17) on the 2-layer random Llama ("tiny-llama"): data and loss
mask, preference pairs, end-of-turn EOS, precision (weights move at lr 1e-5), the step cache, trained-system
discovery, the CLI, and one test per "Try this" bullet of notebook 07."""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import crowdselect_lib as cs
from crowdselect_lib.config import ConfigError, TrainingConfig, load_config
from crowdselect_lib.training.__main__ import main as training_main
from crowdselect_lib.zoo import Zoo

REPO = Path(__file__).resolve().parents[1]
TINY = "tiny-llama"
T = cs.training


def chat(i: int) -> dict:
    return {"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                         {"role": "assistant", "content": f"The answer is {2 * i}."}]}


def pref(i: int) -> dict:
    return {"prompt": [{"role": "user", "content": f"Name the number after {i}."}],
            "chosen": [{"role": "assistant", "content": f"It is {i + 1}."}],
            "rejected": [{"role": "assistant", "content": "I do not know, sorry about that."}]}


def tiny_cfg(**kw) -> TrainingConfig:
    base = dict(student=TINY, max_steps=2, learning_rate=1e-2, per_device_batch_size=2, global_batch_size=2,
                max_length=128, warmup_steps=0, logging_steps=1, mixed_precision="no", seeds=[42])
    return TrainingConfig(**{**base, **kw})


def toy_zoo() -> Zoo:
    """4 instructions x 3 models; u3 ties at the top (m-small, m-mid), u_tie scores all equal."""
    s = {"u1": [0.5, 0.9, 0.1], "u2": [0.2, -0.3, 0.8], "u3": [0.7, 0.7, -1.0], "u_tie": [0.4, 0.4, 0.4]}
    models = ["m-small", "m-mid", "m-large"]
    rows = [{"uuid": u, "instruction": f"question {u}", "model": m, "response": f"answer of {m} to {u}", "rm": v}
            for u, vals in s.items() for m, v in zip(models, vals)]
    return Zoo(pd.DataFrame(rows), pd.DataFrame({"model": models, "family": "f", "size_b": [1.0, 2.0, 3.0]}),
               ["rm"], "demo", "rm")


# ----------------------------------------------------------------------------- params (Table 6 defaults)

def test_defaults_are_table_6_and_the_demo_scale_lives_in_demo_yaml():
    t = TrainingConfig()
    assert (t.learning_rate, t.epochs, t.per_device_batch_size, t.global_batch_size, t.optim, t.lr_scheduler,
            t.warmup_steps, t.max_length, t.max_steps, t.demo_examples, t.eval_fraction) == (
        1e-5, 3.0, 1, 16, "adamw_torch", "cosine", 150, 2048, -1, None, 0.0)
    assert t.accumulation(8) == 2 and t.accumulation(1) == 16 and t.accumulation(2) == 8   # 8 x 1 x 2 = 16
    with pytest.raises(ConfigError, match="global_batch_size 16 is not a multiple of per_device_batch_size 1 x 3"):
        t.accumulation(3)
    assert TrainingConfig(gradient_accumulation_steps=4).accumulation(8) == 4                # explicit wins
    demo = load_config(REPO / "params" / "demo.yaml").training
    assert demo.demo_examples == 96 and demo.learning_rate > t.learning_rate and demo.accumulation(1) == 1
    assert t.preference_learning_rate is None and demo.preference_learning_rate < demo.learning_rate
    assert {"crowdselect", "random", "difficulty_top"} <= set(demo.subsets)
    paper = load_config(REPO / "params" / "paper.yaml").training
    assert paper.demo_examples is None and paper.learning_rate == 1e-5 and paper.global_batch_size == 16


def test_preference_methods_may_have_their_own_learning_rate():
    lr = cs.training.learning_rate_for
    same = TrainingConfig(learning_rate=2e-5)
    assert [lr(same, m) for m in ("sft_full", "sft_lora", "dpo", "simpo", "orpo")] == [2e-5] * 5   # Table 6: one lr
    own = TrainingConfig(learning_rate=1e-2, preference_learning_rate=1e-3)
    assert [lr(own, m) for m in ("sft_full", "sft_lora", "dpo", "simpo", "orpo")] == [1e-2, 1e-2, 1e-3, 1e-3, 1e-3]
    with pytest.raises(ConfigError, match="preference_learning_rate"):
        TrainingConfig(preference_learning_rate=0.0)


def test_steps_per_method():
    cfg = TrainingConfig(max_steps=3, preference_max_steps=2)
    assert [T.steps_for(cfg, m) for m in T.METHODS] == [3, 3, 2, 2, 2]
    assert T.steps_for(cfg, "dpo", 7) == 7 and T.steps_for(TrainingConfig(), "orpo") == -1


def test_precision_fp32_master_weights_and_autocast_rule():
    p = T.precision_settings(TrainingConfig(), cuda=False)
    assert p == {"load_dtype": "float32", "bf16": False, "fp16": False, "gradient_checkpointing": False,
                 "device": "cpu"}
    assert T.precision_settings(TrainingConfig(mixed_precision="bf16"), cuda=False)["bf16"] is True   # asked for
    pure = T.precision_settings(TrainingConfig(dtype="bfloat16", mixed_precision="bf16"), cuda=False)
    assert pure["load_dtype"] == "bfloat16" and not pure["bf16"]
    with pytest.raises(ValueError, match="fp16 autocast needs a GPU"):
        T.precision_settings(TrainingConfig(mixed_precision="fp16"), cuda=False)


# ----------------------------------------------------------------------------- rows, pairs, templates

def test_preference_pairs_take_the_eq2_best_and_the_worst_answer():
    pairs = T.preference_pairs(toy_zoo(), ["u2", "u1", "u3"])
    assert pairs["uuid"].tolist() == ["u2", "u1", "u3"]
    assert pairs["chosen_model"].tolist() == ["m-large", "m-mid", "m-mid"]       # u3: tie -> first name (eq. 2 rule)
    assert pairs["rejected_model"].tolist() == ["m-mid", "m-large", "m-large"]
    np.testing.assert_allclose(pairs[["chosen_score", "rejected_score"]].to_numpy()[:2], [[0.8, -0.3], [0.9, 0.1]])
    best = cs.selection.best_responses(toy_zoo(), ["u2", "u1", "u3"])
    assert pairs["chosen"].tolist() == best["response"].tolist()                 # THE eq. 2 answer, no copy
    assert T.preference_rows(pairs)[1] == {"prompt": [{"role": "user", "content": "question u1"}],
                                           "chosen": [{"role": "assistant", "content": "answer of m-mid to u1"}],
                                           "rejected": [{"role": "assistant", "content": "answer of m-large to u1"}]}
    with pytest.raises(ValueError, match="equal scores for every answer.*u_tie"):
        T.preference_pairs(toy_zoo(), ["u1", "u_tie"])
    with pytest.raises(KeyError, match="'nope' is not in the zoo"):
        T.preference_pairs(toy_zoo(), ["u1", "nope"])
    with pytest.raises(ValueError, match="duplicate uuid 'u1'"):
        T.preference_pairs(toy_zoo(), ["u1", "u1"])


def test_split_rows_and_row_validation():
    rows = [chat(i) for i in range(20)]
    tr, ev = T.split_rows(rows, 0.1, seed=0)
    assert len(ev) == 2 and len(tr) == 18 and not any(r in tr for r in ev)
    assert [rows.index(r) for r in tr] == sorted(rows.index(r) for r in tr)           # order kept
    assert T.split_rows(rows, 0.0, seed=0) == (rows, [])                              # the paper: all rows
    with pytest.raises(ValueError, match="leaves no training rows"):
        T.split_rows(rows[:1], 0.5, seed=0)
    assert T.sft_rows([chat(1)]) == [{"prompt": chat(1)["messages"][:1], "completion": chat(1)["messages"][1:]}]
    with pytest.raises(ValueError, match="SFT row 1 last message: expected a {'role': 'assistant'"):
        T.sft_rows([chat(0), {"messages": chat(1)["messages"][::-1]}])
    with pytest.raises(ValueError, match="preference row 0: missing 'rejected'"):
        T.check_preference_rows([{k: v for k, v in pref(0).items() if k != "rejected"}])


def test_end_of_turn_token_and_pinned_template_date():
    tok = cs.models.load_tokenizer(TINY)
    assert T.end_of_turn_token(tok) == "<|im_end|>"                                # ChatML
    tok.add_special_tokens({"additional_special_tokens": ["<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"]})
    llama3 = ("{% if not date_string is defined %}{% set date_string = strftime_now('%d %b %Y') %}{% endif %}"
              "Today Date: {{ date_string }}\n{% for m in messages %}<|start_header_id|>{{ m['role'] }}"
              "<|end_header_id|>\n\n{{ m['content'] }}<|eot_id|>{% endfor %}")
    tok.chat_template = llama3
    assert T.end_of_turn_token(tok) == "<|eot_id|>"
    msgs = [{"role": "user", "content": "hi"}]
    assert "Today Date: 26 Jul 2024" not in tok.apply_chat_template(msgs, tokenize=False)   # unpinned: today
    tok.chat_template = cs.models.pin_template_date(llama3)
    assert "Today Date: 26 Jul 2024" in tok.apply_chat_template(msgs, tokenize=False)
    assert "Today Date: 1 Jan 2030" in tok.apply_chat_template(msgs, tokenize=False, date_string="1 Jan 2030")
    assert cs.models.pin_template_date(tok.chat_template) == tok.chat_template                # idempotent


# ----------------------------------------------------------------------------- training on the tiny Llama

def test_prompt_tokens_are_masked_from_the_loss(tmp_path):
    rows = [chat(3), chat(12)]
    trainer = T.build_trainer(tiny_cfg(), "sft_full", rows, tmp_path)
    tok = trainer.processing_class
    for row, ex in zip(rows, trainer.train_dataset):
        prompt = tok.apply_chat_template(row["messages"][:1], tokenize=False, add_generation_prompt=True)
        n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
        table = T.loss_mask_table(tok, ex)
        assert n_prompt > 10 and not table["in_loss"][:n_prompt].any() and table["in_loss"][n_prompt:].all()
        assert tok.decode(table["label"][n_prompt:].tolist()) == row["messages"][1]["content"] + "<|im_end|>\n"
        edge = T.mask_boundary(table, width=3)
        assert edge["in_loss"].tolist() == [False] * 3 + [True] * 6                   # 3 prompt, 3 answer, 3 last
    batch = next(iter(trainer.get_train_dataloader()))
    pad = batch["attention_mask"] == 0
    assert pad.any() and (batch["labels"][pad] == -100).all()                        # padding never counts either


def _weights_moved(tmp_path, dtype: str) -> float:
    """Share of the transformer-block weights changed by 3 AdamW steps at the paper's lr 1e-5."""
    import torch

    cfg = tiny_cfg(learning_rate=1e-5, max_steps=3, lr_scheduler="constant", dtype=dtype)
    trainer = T.build_trainer(cfg, "sft_full", [chat(i) for i in range(6)], tmp_path)
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters() if ".layers." in k}
    trainer.train()
    after = dict(trainer.model.named_parameters())
    changed = sum(int((after[k].detach() != v).sum()) for k, v in before.items())
    assert all(after[k].dtype == getattr(torch, dtype) for k in before)
    return changed / sum(v.numel() for v in before.values())


def test_weights_move_at_lr_1e5_with_fp32_master_weights_not_in_pure_bf16(tmp_path):
    """Issue 13: bf16 weights updated in place lose AdamW steps of ~1e-5 (below bf16's resolution near 0.02);
    the fp32 master copy keeps them. This is why `dtype: auto` loads float32 and autocasts."""
    assert _weights_moved(tmp_path / "fp32", "float32") > 0.9
    assert _weights_moved(tmp_path / "bf16", "bfloat16") < 0.25        # most updates rounded away


def test_sft_drives_the_loss_down_and_a_finished_run_is_read_back(tmp_path):
    cfg = tiny_cfg(max_steps=8, lr_scheduler="constant")
    rows = [chat(i) for i in range(4)]
    res = T.train(cfg, "sft_full", rows, tmp_path / "run", eval_rows=[chat(9)], seed=1)
    losses = [h["loss"] for h in res.log_history if "loss" in h]
    assert res.steps == 8 and len(losses) == 8 and losses[-1] < 0.6 * losses[0]
    assert math.isfinite(res.eval_loss) and res.batch == {"per_device": 2, "world_size": 1, "accumulation": 1,
                                                         "global": 2}
    out = tmp_path / "run"
    for f in ("result.json", "metrics.json", "model/chat_template.jinja", "model/model.safetensors",
              "model/generation_config.json", f"model/{T.TEMPLATE_SAMPLE_FILE}"):
        assert (out / f).exists(), f
    assert not (out / "checkpoints").exists()                                        # removed after a finished run
    again = T.train(dataclasses.replace(cfg, logging_steps=5), "sft_full", rows, out, eval_rows=[chat(9)], seed=1)
    assert again.skipped and again.train_loss == res.train_loss and again.steps == 8
    with pytest.raises(ValueError, match="finished training with other settings"):
        T.train(dataclasses.replace(cfg, learning_rate=1e-3), "sft_full", rows, out, eval_rows=[chat(9)], seed=1)


def _base_student(tmp_path) -> str:
    """A copy of tiny-llama that behaves like a base model: EOS = <|endoftext|>, not the template's <|im_end|>."""
    src, dst = cs.models.tiny_llama_path(), tmp_path / "base-tiny"
    shutil.copytree(src, dst)
    for name in ("config.json", "generation_config.json"):
        f = dst / name
        if f.exists():
            d = json.loads(f.read_text())
            d["eos_token_id"] = 0
            f.write_text(json.dumps(d))
    tok = cs.models.load_tokenizer(str(dst))
    tok.eos_token = "<|endoftext|>"
    tok.save_pretrained(dst)
    return str(dst)


@pytest.mark.parametrize("replace_eos", [True, False])
def test_base_student_stops_at_the_end_of_turn_only_with_replace_eos(tmp_path, replace_eos):
    """Issue 13 / LLaMA-Factory's replace_eos: a base student that has learnt the chat template writes
    "Blue.<|im_end|>\n" and goes on; it stops there only when <|im_end|> is its EOS. The learnt continuation is
    forced token by token (a trained model's greedy choice), so the test checks the stopping rule alone."""
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    cfg = tiny_cfg(student=_base_student(tmp_path), max_steps=1, replace_eos=replace_eos, save_steps=100)
    res = T.train(cfg, "sft_full", [{"messages": [{"role": "user", "content": "Sky?"},
                                                  {"role": "assistant", "content": "Blue."}]}] * 2, tmp_path / "run")
    assert res.eos == ({"eos": "<|im_end|>", "base_eos": "<|endoftext|>"} if replace_eos
                       else {"eos": "<|endoftext|>", "base_eos": "<|endoftext|>"})
    tok, model = T.load_trained(tmp_path / "run")
    learnt = tok("Blue.<|im_end|>\n" * 4, add_special_tokens=False)["input_ids"]
    prompt = tok.apply_chat_template([{"role": "user", "content": "Sky?"}], add_generation_prompt=True,
                                     return_tensors="pt", return_dict=True)
    n0 = prompt["input_ids"].shape[1]

    class Learnt(LogitsProcessor):
        def __call__(self, input_ids, scores):
            forced = torch.full_like(scores, -float("inf"))
            forced[:, learnt[input_ids.shape[1] - n0]] = 0.0
            return forced

    out = model.generate(**prompt, max_new_tokens=12, do_sample=False, logits_processor=LogitsProcessorList([Learnt()]))
    answer = tok.decode(out[0, n0:], skip_special_tokens=True)
    if replace_eos:
        n_answer = len(tok("Blue.", add_special_tokens=False)["input_ids"])
        assert answer == "Blue." and out.shape[1] - n0 == n_answer + 1             # "Blue." then <|im_end|>
    else:
        assert answer.startswith("Blue.\nBlue.\n") and out.shape[1] - n0 == 12     # on to the token limit


def test_lora_adapter_saves_reloads_and_gives_the_same_logits(tmp_path):
    import torch

    res = T.train(tiny_cfg(lora_r=4, lora_alpha=8), "sft_lora", [chat(i) for i in range(4)], tmp_path)
    assert (tmp_path / "model" / "adapter_config.json").exists()
    assert not (tmp_path / "model" / "model.safetensors").exists()                 # an adapter, not a full copy
    x = torch.tensor([[1, 520, 3531, 198, 504, 2988, 314]])                       # ids < the tiny vocabulary
    with torch.no_grad():
        _, adapter = T.load_trained(tmp_path, device="cpu", merge=False)
        _, merged = T.load_trained(res.model_dir, device="cpu", merge=True)
        _, base = cs.models.load_causal_lm(TINY, device="cpu")
        want, got, orig = adapter(input_ids=x).logits, merged(input_ids=x).logits, base(input_ids=x).logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert (orig - want).abs().max() > 1e-3                                           # the adapter changed the model


@pytest.mark.parametrize("method", ["dpo", "simpo", "orpo"])
def test_preference_method_runs_a_step_with_finite_loss(tmp_path, method):
    res = T.train(tiny_cfg(max_steps=1, learning_rate=1e-3), method, [pref(i) for i in range(2)],
                  tmp_path / method, eval_rows=[pref(7)])
    assert res.steps == 1 and res.method == method and math.isfinite(res.train_loss)
    assert math.isfinite(res.eval_loss) and (tmp_path / method / "model" / "model.safetensors").exists()


@pytest.mark.parametrize("method", ["simpo", "orpo"])
def test_simpo_orpo_labels_end_with_one_end_token_and_no_device_map(tmp_path, method):
    trainer = T.build_trainer(tiny_cfg(max_steps=1), method, [pref(1), pref(2)], tmp_path)
    assert trainer.args.model_init_kwargs["device_map"] is None                     # DDP / DeepSpeed place it
    eos = trainer.processing_class.eos_token_id
    for ex in trainer.train_dataset:
        for key in ("chosen_labels", "rejected_labels"):
            answer = [t for t in ex[key] if t != -100]
            assert answer[-1] == eos and answer.count(eos) == 1, trainer.processing_class.decode(answer)


# ----------------------------------------------------------------------------- the run level (step cache)

@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    over = {"run.root": str(root), "run.name": "toy", "zoo.n_instructions": 300, "selection.k": 12,
            "training.student": TINY, "training.subsets": ["difficulty_top", "random"],
            "training.methods": ["sft_lora"], "training.max_steps": 2, "training.preference_max_steps": 1,
            "training.demo_examples": 6, "training.per_device_batch_size": 2, "training.global_batch_size": 2,
            "training.max_length": 96, "training.learning_rate": 1e-2, "training.warmup_steps": 0}
    cfg = load_config(REPO / "params" / "demo.yaml", over)
    return cs.Run.from_config(cfg), cfg, over


def test_subset_table_reads_selections_and_baselines_by_name(toy_run):
    run, cfg, _ = toy_run
    sel = T.subset_table(run, cfg, "difficulty_top")
    assert sel["uuid"].tolist() == cs.selection.load_run_selection(run, cfg, "difficulty_top")["uuid"].tolist()
    base = T.subset_table(run, cfg, "random")
    assert base["uuid"].tolist() == cs.baselines.load_run_baseline(run, cfg, "random")["uuid"].tolist()
    assert T.subset_step(run, cfg, "random").key == cs.baselines.baseline_step(run, cfg, "random").key
    with pytest.raises(ValueError, match="'nope' is neither a selection subset .* nor a baseline"):
        T.subset_table(run, cfg, "nope")
    assert T.subset_names(dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, subsets=None))) == [
        s.name for s in cfg.selection.subsets] + list(cfg.baselines.methods)


def test_train_step_key_follows_the_settings_that_change_the_model(toy_run):
    run, cfg, over = toy_run
    key = T.train_step(run, cfg, "random", TINY, "sft_lora", 42).key

    def k(**o):
        c = load_config(REPO / "params" / "demo.yaml", {**over, **o})
        return T.train_step(run, c, "random", TINY, "sft_lora", 42).key

    assert k(**{"training.logging_steps": 7, "training.save_steps": 3, "training.keep_checkpoints": True}) == key
    assert k(**{"training.methods": ["sft_lora", "dpo"], "training.seeds": [42, 7]}) == key
    changed = [k(**{"training.learning_rate": 1e-3}), k(**{"training.lora_r": 16}), k(**{"training.max_length": 64}),
               k(**{"training.global_batch_size": 4}), k(**{"training.demo_examples": 8}),
               k(**{"training.student_revisions": {TINY: "abc"}}), k(**{"baselines.random_seed": 5}),
               k(**{"training.eval_fraction": 0.2})]
    assert key not in changed and len(set(changed)) == len(changed)
    assert T.train_step(run, cfg, "random", TINY, "sft_lora", 43).key != key
    assert k(**{"training.dpo_beta": 0.5}) == key                                     # only DPO reads it


def test_run_training_reuses_trained_systems_and_never_mixes_settings(toy_run):
    from crowdselect_lib.runs import steps_computed

    run, cfg, over = toy_run
    systems = T.trained_systems(run, cfg)
    assert systems.columns.tolist() == ["system", "subset", "student", "method", "seed", "key", "path", "done"]
    assert systems["system"].tolist() == ["difficulty_top.sft_lora", "random.sft_lora"] and not systems["done"].any()
    first = T.train_all(run, cfg)
    assert first["steps"].tolist() == [2, 2] and not first["reused"].any()
    done = T.trained_systems(run, cfg)
    assert done["done"].all() and done["key"].tolist() == systems["key"].tolist()
    manifest = json.loads((Path(done["path"][0]).parent / "manifest.json").read_text())
    assert manifest["key"] == done["key"][0] and manifest["steps"] == 2
    n = steps_computed()
    again = T.train_all(run, cfg)
    assert again["reused"].all() and steps_computed() == n                           # an unchanged rerun: no work
    tok, model = T.load_trained(done["path"][1])
    assert tok.eos_token == "<|im_end|>" and model.generation_config.eos_token_id[0] == tok.eos_token_id
    hist = T.loss_history(run, cfg)
    assert hist.groupby("system").size().tolist() == [2, 2]


def test_cli_trains_a_subset_of_the_run(toy_run, capsys):
    run, cfg, over = toy_run
    sets = [a for key, v in over.items() for a in ("--set", f"{key}={json.dumps(v)}")]
    sets += ["--set", "training.methods=[sft_lora, sft_full]"]
    assert training_main(["--params", str(REPO / "params" / "demo.yaml"), "--subset", "random", "--method",
                            "sft_full", *sets]) == 0
    assert "random.sft_full" in capsys.readouterr().out
    c = load_config(REPO / "params" / "demo.yaml", {**over, "training.methods": ["sft_lora", "sft_full"]})
    s = T.trained_systems(run, c).set_index("system")
    assert s.loc["random.sft_full", "done"] and not s.loc["difficulty_top.sft_full", "done"]
    with pytest.raises(SystemExit):
        training_main(["--params", str(REPO / "params" / "demo.yaml"), "--subset", "nope", *sets])


# ----------------------------------------------------------------------------- notebook 07's "Try this"

def test_try_this_lora_rank_16(toy_run):
    """`{"training.methods": ["sft_lora"], "training.lora_r": 16, "training.lora_alpha": 32}`: a rank-16 adapter."""
    run, cfg, over = toy_run
    c = load_config(REPO / "params" / "demo.yaml", {**over, "training.subsets": ["random"], "training.lora_r": 16,
                                                    "training.lora_alpha": 32})
    row = T.train_all(run, c).iloc[0]
    adapter = json.loads((Path(T.trained_systems(run, c)["path"][0]) / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"]) == (16, 32) and not row["reused"]


def test_try_this_other_preference_methods_and_the_paper_lr(toy_run):
    """`training.methods: [sft_full, simpo, orpo]` trains SimPO and ORPO too, each its own panel and loss column;
    `training.learning_rate: 1e-5` gives every system a new key."""
    run, cfg, over = toy_run
    c = load_config(REPO / "params" / "demo.yaml", {**over, "training.subsets": ["random"],
                                                    "training.methods": ["sft_full", "simpo", "orpo"]})
    out = T.train_all(run, c)
    assert out["system"].tolist() == ["random.sft_full", "random.simpo", "random.orpo"]
    assert out["steps"].tolist() == [2, 1, 1]
    h = T.loss_summary(T.loss_history(run, c)).set_index("method")
    assert h.loc[["simpo", "orpo"], "preference_loss_last"].notna().all() and h.loc["sft_full", "sft_nll_last"] > 0
    assert h.loc[["simpo", "orpo"], "sft_nll_last"].isna().all()
    fig = T.plot_loss_curves(T.loss_history(run, c))
    assert [ax.get_title() for ax in fig.axes] == ["SFT NLL · lr 0.01", "SimPO loss · lr 0.001", "ORPO loss · lr 0.001"]
    slow = load_config(REPO / "params" / "demo.yaml", {**over, "training.learning_rate": 1e-5})
    assert (T.trained_systems(run, slow)["key"] != T.trained_systems(run, cfg)["key"]).all()


def test_try_this_more_steps_and_seeds_are_new_systems(toy_run):
    """`training.max_steps` changes every key; `training.seeds: [1, 2]` makes one system per seed."""
    run, cfg, over = toy_run
    longer = load_config(REPO / "params" / "demo.yaml", {**over, "training.max_steps": 4})
    assert not set(T.trained_systems(run, longer)["key"]) & set(T.trained_systems(run, cfg)["key"])
    seeds = load_config(REPO / "params" / "demo.yaml", {**over, "training.seeds": [1, 2]})
    assert T.trained_systems(run, seeds)["system"].tolist() == [
        "difficulty_top.sft_lora.seed1", "difficulty_top.sft_lora.seed2", "random.sft_lora.seed1",
        "random.sft_lora.seed2"]


def test_try_this_smollm2_student_and_an_eval_split(toy_run):
    """`training.student: smollm2-135m-instruct` (+ LoRA, lr 1e-4, 6 steps) is a new student with new keys;
    `training.eval_fraction` holds rows out and reports an eval loss."""
    run, cfg, over = toy_run
    smol = load_config(REPO / "params" / "demo.yaml", {**over, "training.student": "smollm2-135m-instruct",
                                                       "training.methods": ["sft_lora"],
                                                       "training.learning_rate": 1e-4, "training.max_steps": 6})
    s = T.trained_systems(run, smol)
    assert set(s["student"]) == {"smollm2-135m-instruct"}
    assert not set(s["key"]) & set(T.trained_systems(run, cfg)["key"])
    ev = load_config(REPO / "params" / "demo.yaml", {**over, "training.subsets": ["random"],
                                                     "training.eval_fraction": 0.34})
    row = T.train_all(run, ev).iloc[0]
    assert row["n_train"] == 4 and math.isfinite(row["eval_loss"]) and not row["reused"]   # 6 rows, 2 held out


def test_loss_curves_figure_has_separate_panels_for_nll_and_preference_loss(toy_run):
    run, cfg, over = toy_run
    c = load_config(REPO / "params" / "demo.yaml", {**over, "training.subsets": ["random"],
                                                    "training.methods": ["sft_lora", "simpo"]})
    T.train_all(run, c)
    fig = T.plot_loss_curves(T.loss_history(run, c))
    assert (c.training.learning_rate, c.training.preference_learning_rate) == (1e-2, 1e-3)     # demo.yaml
    assert [ax.get_title() for ax in fig.axes] == ["SFT NLL · lr 0.01", "SimPO loss · lr 0.001"]  # each panel's own
    assert fig.axes[0].get_lines()[0].get_color() == T.subset_colours(["random"])["random"]


def test_end_of_turn_coverage_counts_rows_cut_before_their_end_token(toy_run):
    """Chapter 07: every demo row keeps its end-of-turn token inside max_length; a shorter limit cuts rows, counted
    and named (the position is the template's own end token, checked against a hand-tokenized row)."""
    run, _, over = toy_run
    cfg = load_config(REPO / "params" / "demo.yaml", {**over, "training.max_length": 160})    # the demo's limit
    cov = T.end_of_turn_coverage(run, cfg).set_index("subset")
    assert (cov["share_kept"] == 1.0).all() and (cov["cut"] == 0).all() and (cov["first_cut"] == "").all()
    short = load_config(REPO / "params" / "demo.yaml", {**over, "training.max_length": 70})
    cut = T.end_of_turn_coverage(run, short).set_index("subset")
    assert (cut["cut"] > 0).all() and (cut["kept"] + cut["cut"] == cut["rows"]).all()
    row = T.training_rows(run, cfg, cut.index[0], "sft_full")[int(0)]
    tok = cs.models.load_tokenizer(cfg.training.student)
    T.use_end_of_turn(tok)
    ids = tok(tok.apply_chat_template(row["messages"], tokenize=False), add_special_tokens=False)["input_ids"]
    assert T.end_of_turn_positions(tok, [row])[0] == len(ids) - 2 and ids[-2] == tok.convert_tokens_to_ids("<|im_end|>")
