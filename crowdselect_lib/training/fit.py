"""One training into a folder, resumable, and THE loader of trained students (appendix B.2, Table 6).

A training folder holds ``model/`` (weights or LoRA adapter, the tokenizer with its chat template and end-of-turn
EOS, ``generation_config.json``, `TEMPLATE_SAMPLE_FILE`), ``checkpoints/`` while it runs (a killed run resumes
from the last one), ``metrics.json`` (losses and log history) and ``result.json`` last (with the digest of its
settings and rows: an equal digest is read back, another is an error). The keyed step around it
(`training.run.train_step`) puts each configuration in a folder of its own.
"""
from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..models import device_and_dtype, quiet
from ..runs import digest, read_json, write_json
from .trainers import build_trainer, set_generation_eos, steps_for

TEMPLATE_SAMPLE_FILE = "chat_template_sample.json"   # {"messages", "rendered"}: the judge re-renders it to compare
SAMPLE_CONVERSATION = [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "2 + 2 = 4."}]
# TrainingConfig fields left out of a folder's digest: they do not change the model, or enter resolved (the student)
RUN_ONLY = {"student", "students", "methods", "subsets", "seeds", "student_revisions", "logging_steps", "save_steps",
            "save_total_limit", "keep_checkpoints", "eval_steps", "gradient_checkpointing"}


@dataclass
class TrainResult:
    """What one training produced (``metrics.json`` in its folder)."""
    output_dir: Path
    method: str
    model_name: str
    seed: int
    train_loss: float | None        # mean training loss over all the run's steps (also across a resume)
    eval_loss: float | None         # loss on the eval rows after training (None without eval rows)
    steps: int                      # optimizer steps in total (including those before a resume)
    n_train: int
    n_eval: int
    seconds: float
    resumed_from: str | None = None
    dropped: int = 0                # train rows TRL dropped (answer cut away entirely by `max_length`)
    skipped: bool = False           # True when the run had finished earlier and was only read back
    precision: dict = field(default_factory=dict)
    batch: dict = field(default_factory=dict)
    eos: dict = field(default_factory=dict)
    log_history: list = field(default_factory=list, repr=False)

    @property
    def model_dir(self) -> Path:
        return Path(self.output_dir) / "model"

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "output_dir": str(self.output_dir)}


def last_checkpoint(output_dir: Path) -> str | None:
    """The newest complete ``checkpoints/checkpoint-N`` (one with its trainer state), None if there is none."""
    ckpts = [p for p in (Path(output_dir) / "checkpoints").glob("checkpoint-*")
             if p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").exists()]
    return str(max(ckpts, key=lambda p: int(p.name.split("-")[-1]))) if ckpts else None


def mean_loss(log_history: list[dict]) -> float | None:
    """Mean train loss over the logged steps, each logged value weighted by the steps it covers (the Trainer's
    own `training_loss` only covers the steps since a resume)."""
    logged = [(h["step"], h["loss"]) for h in log_history if "loss" in h]
    if not logged:
        return None
    steps = [s for s, _ in logged]
    weights = [b - a for a, b in zip([0] + steps[:-1], steps)]
    return float(sum(w * x for w, (_, x) in zip(weights, logged)) / sum(weights))


def save_dtype(precision: dict) -> str | None:
    """The dtype a trained model is saved in: the one it trained in (bf16 / fp16 autocast on a GPU: half the disk
    of fp32 master weights), else None (its load dtype)."""
    return "bfloat16" if precision.get("bf16") else "float16" if precision.get("fp16") else None


def _save_model(trainer, model_dir: Path, dtype: str | None = None) -> None:
    """Weights or adapter on EVERY rank (`trainer.save_model` gathers sharded FSDP / ZeRO-3 weights collectively:
    rank 0 alone would hang), cast to `dtype` first where the weights are whole on each rank; then, on the main
    process only, the tokenizer (chat template, end-of-turn EOS), generation config and rendered template sample."""
    if dtype is not None and not (getattr(trainer, "is_fsdp_enabled", False)
                                  or getattr(trainer, "is_deepspeed_enabled", False)):
        import torch

        trainer.model.to(getattr(torch, dtype))
    trainer.save_model(str(model_dir))
    if not trainer.is_world_process_zero():
        return
    tok = trainer.processing_class
    tok.save_pretrained(str(model_dir))
    model = trainer.model.get_base_model() if hasattr(trainer.model, "get_base_model") else trainer.model
    model.generation_config.save_pretrained(str(model_dir))
    write_json({"messages": SAMPLE_CONVERSATION, "rendered": tok.apply_chat_template(SAMPLE_CONVERSATION,
                                                                                     tokenize=False)},
               model_dir / TEMPLATE_SAMPLE_FILE)


def train(cfg, method: str, train_rows, output_dir, *, model_name: str | None = None, eval_rows=None,
          seed: int = 42, max_steps: int | None = None, callbacks=None, desc: str | None = None) -> TrainResult:
    """Train `method` on `train_rows` into `output_dir`; read back a finished run, resume a killed one.

    `cfg`: a `config.TrainingConfig`; `max_steps` overrides `cfg.max_steps` / `preference_max_steps` (-1 =
    `cfg.epochs` epochs). SFT rows: ``{"messages": [user, assistant]}``; preference rows: ``{"prompt", "chosen",
    "rejected"}`` (conversational). A finished run with other settings or rows in the same folder is an error."""
    out = Path(output_dir)
    train_rows, eval_rows = list(train_rows), list(eval_rows or [])
    name = model_name or cfg.student
    steps = steps_for(cfg, method, max_steps)
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in RUN_ONLY}
    key = digest([settings, cfg.student_revisions.get(name), method, name, seed, steps, train_rows, eval_rows])
    done = out / "result.json"
    if done.exists():
        rec = read_json(done)
        if rec.get("digest") != key:
            raise ValueError(f"{out} holds a finished training with other settings or rows (digest "
                             f"{rec.get('digest')} != {key}); use another folder")
        rec.pop("digest")
        return TrainResult(**{**rec, "output_dir": out, "skipped": True})
    resume = last_checkpoint(out)
    t0 = time.perf_counter()
    trainer = build_trainer(cfg, method, train_rows, out, model_name=name, eval_rows=eval_rows, seed=seed,
                            max_steps=steps, callbacks=callbacks, desc=desc)
    dropped = len(train_rows) - len(trainer.train_dataset)
    with quiet():
        output = trainer.train(resume_from_checkpoint=resume)
        eval_loss = trainer.evaluate()["eval_loss"] if eval_rows else None
    info = trainer.crowdselect_info
    history = list(trainer.state.log_history)
    result = TrainResult(output_dir=out, method=method, model_name=name, seed=seed,
                         train_loss=mean_loss(history) if resume else float(output.training_loss),
                         eval_loss=eval_loss, steps=int(trainer.state.global_step), n_train=len(train_rows),
                         n_eval=len(eval_rows), seconds=round(time.perf_counter() - t0, 1),
                         resumed_from=Path(resume).name if resume else None, dropped=dropped,
                         precision=info["precision"], batch=info["batch"], eos=info["eos"], log_history=history)
    with quiet():
        _save_model(trainer, out / "model", save_dtype(info["precision"]))
    if trainer.is_world_process_zero():
        write_json(result.to_dict(), out / "metrics.json")
        if not cfg.keep_checkpoints:
            shutil.rmtree(out / "checkpoints", ignore_errors=True)
        write_json({**result.to_dict(), "digest": key, "skipped": False}, done)
    return result


def load_trained(path, device: str | None = None, merge: bool = True, dtype: str = "auto"):
    """(tokenizer, model) of a trained student: `path` is its training folder or its ``model/`` folder; full
    weights, or the base student + LoRA adapter (merged unless `merge=False`). Generation stops at the saved
    end-of-turn EOS. Device and dtype by `models.device_and_dtype` (bf16 on GPU, fp32 on CPU)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = Path(path) / "model" if (Path(path) / "model").is_dir() else Path(path)
    if not (model_dir / "tokenizer_config.json").exists():
        raise FileNotFoundError(f"no trained model in {model_dir} (run the training stage, chapter 07)")
    device, torch_dtype = device_and_dtype(device, dtype)
    with quiet():
        tok = AutoTokenizer.from_pretrained(model_dir)
        if (model_dir / "adapter_config.json").exists():
            from peft import PeftConfig, PeftModel

            base_path = PeftConfig.from_pretrained(model_dir).base_model_name_or_path
            model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_path, dtype=torch_dtype),
                                              model_dir)
            if merge:
                model = model.merge_and_unload()
        else:
            model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch_dtype)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    set_generation_eos(model, tok)
    return tok, model.to(device).eval()


__all__ = ["TrainResult", "train", "load_trained", "last_checkpoint", "mean_loss", "TEMPLATE_SAMPLE_FILE",
           "RUN_ONLY", "save_dtype"]
