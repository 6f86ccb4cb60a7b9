"""TRL trainers for the student (appendix B.2, Table 6; Table 17): SFT (full, LoRA), DPO, SimPO, ORPO.

The paper trained with LLaMA-Factory; we use TRL + PEFT with its settings:

- ``sft_full`` / ``sft_lora``: `trl.SFTTrainer` on conversational prompt/completion rows (loss on the answer only).
- ``dpo``: `trl.DPOTrainer` (sigmoid loss, `dpo_beta`; reference = the frozen student, or the adapter switched off).
- ``simpo``: TRL's CPO trainer with ``loss_type="simpo"``, ``cpo_alpha=0`` (no reference); ``orpo``: TRL's ORPO
  trainer (`orpo_beta` = lambda). Both live in ``trl.experimental`` (`experimental`: the one place that imports it).

Precision (as LLaMA-Factory): the student is loaded in float32 (master weights) and computes under bf16 autocast
(``bf16=True``) on GPUs (fp16 on GPUs without bf16); on a CPU in float32.
``training.dtype: bfloat16`` loads bf16 weights with no fp32 copy: at lr 1e-5 most AdamW updates are smaller than
bf16's resolution and are lost (tests/test_training.py shows it). Batches: `TrainingConfig.accumulation` keeps the
global batch (Table 6: 16) whatever the number of GPUs. Checkpoints every `save_steps` (default: each quarter of
the run) let a killed run resume; the last step saves the model instead.
"""
from __future__ import annotations

import dataclasses
import importlib
import logging
import os
from pathlib import Path

from ..models import device_and_dtype, load_tokenizer, quiet, resolve_model
from ..runs import Progress
from .data import (METHODS, PREFERENCE_METHODS, SFT_METHODS, check_preference_rows, rendered_preference_rows, sft_rows,
                   use_end_of_turn)

log = logging.getLogger("crowdselect")


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def experimental(name: str):
    """``trl.experimental.<name>`` (``cpo`` for SimPO, ``orpo``): the package's one use of TRL's experimental
    namespace, which TRL says may change in any release."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    try:
        return importlib.import_module(f"trl.experimental.{name}")
    except ImportError as e:
        import trl

        raise ImportError(f"SimPO/ORPO need trl.experimental.{name}, which trl {trl.__version__} does not have "
                          f"({e}); install the TRL range of pyproject.toml (trl>=0.26,<1.17)") from e


def precision_settings(cfg, cuda: bool | None = None) -> dict:
    """``load_dtype`` (float32 = master weights), ``bf16`` / ``fp16`` (autocast), ``gradient_checkpointing``.
    `mixed_precision: auto` = bf16 autocast on a GPU (fp16 on GPUs without bf16), none on a CPU (fp32: the
    same numbers on every CPU; ``bf16`` may be asked for explicitly on CPUs with AMX)."""
    import torch

    cuda = device_and_dtype()[0].startswith("cuda") if cuda is None else cuda
    load = "float32" if cfg.dtype == "auto" else cfg.dtype
    mp = cfg.mixed_precision
    if mp == "auto":
        mp = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "no"
    if mp == "fp16" and not cuda:
        raise ValueError("training.mixed_precision: fp16 autocast needs a GPU (use bf16 or no on a CPU)")
    if load != "float32":
        mp = "no"                       # weights already in low precision: nothing to autocast
    gc = cuda if cfg.gradient_checkpointing is None else cfg.gradient_checkpointing
    return {"load_dtype": load, "bf16": mp == "bf16", "fp16": mp == "fp16", "gradient_checkpointing": gc,
            "device": "cuda" if cuda else "cpu"}


def steps_for(cfg, method: str, max_steps: int | None = None) -> int:
    """Optimizer steps: `max_steps` if given, else `preference_max_steps` for DPO/SimPO/ORPO (when set), else
    `cfg.max_steps` (-1 = `cfg.epochs` epochs)."""
    if max_steps is not None:
        return max_steps
    if method in PREFERENCE_METHODS and cfg.preference_max_steps is not None:
        return cfg.preference_max_steps
    return cfg.max_steps


def learning_rate_for(cfg, method: str) -> float:
    """`preference_learning_rate` for DPO/SimPO/ORPO when set, else `learning_rate` (Table 6: 1e-5 for all)."""
    if method in PREFERENCE_METHODS and cfg.preference_learning_rate is not None:
        return cfg.preference_learning_rate
    return cfg.learning_rate


def trl_args(cfg, method: str, output_dir: Path, seed: int, max_steps: int, has_eval: bool, prec: dict,
             revision: str | None = None):
    """The TRL config of `method`: Table 6 settings + the method's own loss parameters."""
    init = {"dtype": prec["load_dtype"], "device_map": None}       # device_map=None: DDP/DeepSpeed place the model
    if revision:
        init["revision"] = revision
    common = dict(
        output_dir=str(output_dir / "checkpoints"), seed=seed, data_seed=seed, report_to="none",
        learning_rate=learning_rate_for(cfg, method), num_train_epochs=cfg.epochs, max_steps=max_steps,
        per_device_train_batch_size=cfg.per_device_batch_size, per_device_eval_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=cfg.accumulation(world_size()), optim=cfg.optim,
        lr_scheduler_type=cfg.lr_scheduler, warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay,
        logging_steps=cfg.logging_steps, save_strategy="steps", save_steps=cfg.save_steps or 0.25,
        save_total_limit=cfg.save_total_limit,
        eval_strategy="steps" if (has_eval and cfg.eval_steps) else "no", eval_steps=cfg.eval_steps,
        bf16=prec["bf16"], fp16=prec["fp16"], max_length=cfg.max_length, model_init_kwargs=init, disable_tqdm=True,
        dataloader_num_workers=0, use_cpu=prec["device"] == "cpu", **_checkpointing(prec["gradient_checkpointing"]))
    if method in SFT_METHODS:
        from trl import SFTConfig

        return SFTConfig(completion_only_loss=True, **common)
    if method == "dpo":
        from trl import DPOConfig

        return DPOConfig(beta=cfg.dpo_beta, loss_type=["sigmoid"], **common)
    if method == "simpo":
        return experimental("cpo").CPOConfig(loss_type="simpo", cpo_alpha=0.0, beta=cfg.simpo_beta,
                                             simpo_gamma=cfg.simpo_gamma, remove_unused_columns=False, **common)
    return experimental("orpo").ORPOConfig(beta=cfg.orpo_beta, remove_unused_columns=False, **common)


def _checkpointing(on: bool) -> dict:
    """Activation (gradient) checkpointing under the name this transformers knows (5.x renamed it)."""
    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    return {"activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing": on}


def _trainer_class(method: str):
    if method in SFT_METHODS:
        from trl import SFTTrainer

        return SFTTrainer
    if method == "dpo":
        from trl import DPOTrainer

        return DPOTrainer
    return experimental("cpo").CPOTrainer if method == "simpo" else experimental("orpo").ORPOTrainer


def lora_config(cfg):
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.lora_target_modules or "all-linear", task_type="CAUSAL_LM")


def uses_lora(cfg, method: str) -> bool:
    return method == "sft_lora" or (method in PREFERENCE_METHODS and cfg.preference_lora)


def _callbacks(cfg, extra, desc: str) -> list:
    """Progress to run.log (one bar, a log line per logged step) and no checkpoint at the very last step (the
    model is saved to ``model/`` right after, so a checkpoint there would only write the optimizer states again)."""
    from transformers import TrainerCallback

    keep = cfg.keep_checkpoints

    class Progressed(TrainerCallback):
        bar = None

        def on_train_begin(self, args, state, control, **kw):
            self.bar = Progress(max(state.max_steps - state.global_step, 0), desc, "step")

        def on_step_end(self, args, state, control, **kw):
            if self.bar is not None:
                self.bar.update(1)
            if not keep and state.global_step >= state.max_steps:
                control.should_save = False
            return control

        def on_log(self, args, state, control, logs=None, **kw):
            shown = {k: round(v, 4) for k, v in (logs or {}).items() if isinstance(v, float) and "loss" in k}
            if shown:
                log.info("%s: step %d/%d %s", desc, state.global_step, state.max_steps, shown)

        def on_train_end(self, args, state, control, **kw):
            if self.bar is not None:
                self.bar.__exit__(None, None, None)

    return [Progressed(), *(extra or [])]


def _base(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def set_generation_eos(model, tok) -> None:
    """The model stops at the tokenizer's EOS (the end-of-turn token after `use_end_of_turn`), also at its old one."""
    m = _base(model)
    ids = m.generation_config.eos_token_id
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    m.config.eos_token_id = tok.eos_token_id
    m.generation_config.eos_token_id = [tok.eos_token_id, *[i for i in ids if i != tok.eos_token_id]]
    m.generation_config.pad_token_id = tok.pad_token_id


def build_trainer(cfg, method: str, train_rows, output_dir, *, model_name: str | None = None, eval_rows=None,
                  seed: int = 42, max_steps: int | None = None, callbacks=None, desc: str | None = None):
    """A ready TRL trainer for `method` on `train_rows` (SFT chat rows or preference rows), nothing trained yet.
    `cfg` is a `config.TrainingConfig`. The tokenizer's EOS becomes the end-of-turn token (`training.replace_eos`)."""
    with quiet():                                       # first imports of datasets / TRL warn about widgets etc.
        from datasets import Dataset, disable_progress_bars
        from transformers.trainer_callback import PrinterCallback

    if method not in METHODS:
        raise ValueError(f"unknown training method {method!r}; choose one of {list(METHODS)}")
    name = model_name or cfg.student
    revision = cfg.student_revisions.get(name)
    tok = load_tokenizer(name, revision=revision)
    eos = use_end_of_turn(tok) if cfg.replace_eos else {"eos": tok.eos_token, "base_eos": tok.eos_token}
    if method in SFT_METHODS:
        prep = sft_rows
    elif method == "dpo":
        prep = check_preference_rows
    else:
        def prep(rows):
            return rendered_preference_rows(tok, check_preference_rows(rows))
    disable_progress_bars()
    train_ds = Dataset.from_list(prep(train_rows))
    eval_ds = Dataset.from_list(prep(eval_rows)) if eval_rows else None
    prec = precision_settings(cfg)
    args = trl_args(cfg, method, Path(output_dir), seed, steps_for(cfg, method, max_steps), eval_ds is not None,
                    prec, revision)
    with quiet():
        trainer = _trainer_class(method)(
            model=resolve_model(name), args=args, train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tok,
            peft_config=lora_config(cfg) if uses_lora(cfg, method) else None,
            callbacks=_callbacks(cfg, callbacks, desc or f"training {method}"))
    trainer.remove_callback(PrinterCallback)           # logs go to run.log (`_callbacks`), not as dicts to stdout
    set_generation_eos(trainer.model, tok)
    trainer.crowdselect_info = {"precision": prec, "eos": eos, "revision": revision,
                                "batch": {"per_device": cfg.per_device_batch_size, "world_size": world_size(),
                                          "accumulation": args.gradient_accumulation_steps,
                                          "global": cfg.per_device_batch_size * world_size()
                                          * args.gradient_accumulation_steps}}
    return trainer
