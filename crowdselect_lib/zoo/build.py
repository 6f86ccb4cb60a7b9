"""Build a crowd from instructions alone (paper §3.1: "many LLMs answered the same instructions"; chapter 01, and
chapter 02 scores it): every model of a list answers every instruction through the one LLM client (`llm`).

- `crowd_models(rows)`: the model list, one row per model: ``model, family, size_b`` as in models.csv (family and
  size feed Stability, eq. 5), plus where the answers come from: ``source`` (a Hugging Face id, a local folder or an
  alias such as ``smollm2-135m-instruct``; default: ``model``), ``backend`` (``local`` transformers, or ``openai``
  for any OpenAI-compatible endpoint, vLLM included), ``base_url`` and ``api_key_env`` for an endpoint.
- `answers_step(run, instructions, models, llm_cfg, settings)`: the key: the instructions' digest, the model list,
  the generation settings and the client settings. `generate_answers` reads it when done; otherwise it asks each
  model through `llm.make_llm`, whose reply cache (``<run>/cache/llm``) keeps every answer the moment it arrives,
  so a killed build resumes without paying twice. Before any call it counts the requests not yet cached: paid
  endpoints (backend ``openai``) above `max_calls_without_confirm` need ``confirm_cost=True``.
- A refused request (HTTP 400/413/422) is an answer ``None`` with its error kept; the zoo counts and drops such
  instructions (``drop_incomplete``), as for any crowd with a missing answer.

`scoring.score_crowd` adds the reward-model columns (chapter 02) and `local.write_crowd` writes the result in the
local crowd format that `python -m crowdselect_lib select` reads.
"""
from __future__ import annotations

import dataclasses
import logging

import pandas as pd

from ..llm import GenerationSettings, LLMError, make_llm
from ..runs import Progress, Step, digest, write_parquet
from .local import instruction_uuids
from .model import ZooError, check_models

log = logging.getLogger("crowdselect")
ANSWERS_VERSION = "1"
BACKENDS = ("local", "openai")
ANSWER_COLUMNS = ["uuid", "instruction", "model", "response", "finish_reason", "error"]


# The offline crowd of chapters 01-02: two local models in two families (a demonstration of the mechanics; the
# tiny Llama is random, and each family has one size, so this crowd alone has no Stability).
OFFLINE_CROWD = [
    {"model": "SmolLM2-135M-Instruct", "family": "smollm2", "size_b": 0.135, "source": "smollm2-135m-instruct"},
    {"model": "tiny-llama", "family": "tiny-llama", "size_b": 0.0003, "source": "tiny-llama"},
]


class CostNotConfirmed(LLMError):
    """More paid requests than `max_calls_without_confirm` and no ``confirm_cost=True``."""


def crowd_models(rows) -> pd.DataFrame:
    """The model list (a DataFrame or a list of dicts; see the module docstring), checked: family and size as
    models.csv (`model.check_models`), a known backend, an endpoint for ``openai`` rows."""
    df = pd.DataFrame(rows).copy()
    if df.empty:
        raise ZooError("the crowd needs at least one model")
    for col, default in (("source", None), ("backend", "local"), ("base_url", None), ("api_key_env", None)):
        if col not in df.columns:
            df[col] = default
    df["source"] = df["source"].where(df["source"].notna(), df.get("model"))
    df["backend"] = df["backend"].fillna("local")
    bad = ~df["backend"].isin(BACKENDS)
    if bad.any():
        raise ZooError(f"model {df.loc[bad, 'model'].iloc[0]!r}: backend {df.loc[bad, 'backend'].iloc[0]!r} is not "
                       f"one of {list(BACKENDS)}")
    checked = check_models(df)
    return checked[["model", "family", "size_b", "source", "backend", "base_url", "api_key_env"]]


def instruction_table(instructions) -> pd.DataFrame:
    """``uuid, instruction`` (uuid = SHA-1 prefix of the text, as the local format); blank or repeated texts are
    errors naming them."""
    texts = pd.Series(list(instructions), dtype=object)
    if texts.empty:
        raise ZooError("no instructions to answer")
    blank = texts.map(lambda t: not isinstance(t, str) or not t.strip())
    if blank.any():
        raise ZooError(f"{int(blank.sum())} instruction(s) are blank or not text, e.g. position {int(blank.idxmax())}")
    dup = texts.duplicated()
    if dup.any():
        raise ZooError(f"instruction {texts[dup].iloc[0][:60]!r} appears twice")
    return pd.DataFrame({"uuid": instruction_uuids(texts), "instruction": texts})


def _client_cfg(llm_cfg, row):
    over = {"backend": row["backend"], "model": row["source"]}
    if row["backend"] == "openai":
        if row["base_url"] is None or pd.isna(row["base_url"]):
            raise ZooError(f"model {row['model']!r}: backend openai needs a base_url (e.g. a vLLM server's /v1)")
        over["base_url"] = row["base_url"]
        if row["api_key_env"] is not None and not pd.isna(row["api_key_env"]):
            over["api_key_env"] = row["api_key_env"]
    return dataclasses.replace(llm_cfg, **over)


def answers_step(run, instructions: pd.DataFrame, models: pd.DataFrame, llm_cfg, settings: GenerationSettings) -> Step:
    """The key of the crowd's answers (pure: the inputs' digests and settings, nothing is asked)."""
    clients = [{k: v for k, v in dataclasses.asdict(_client_cfg(llm_cfg, r)).items()
                if k in ("backend", "model", "base_url", "extra_body")} for _, r in models.iterrows()]
    return Step(run.dir, "crowd", "answers",
                {"models": models.astype(object).where(models.notna(), None).to_dict("records"),
                 "clients": clients, "generation": dataclasses.asdict(settings)},
                {"instructions": digest(instructions["instruction"].tolist())}, ANSWERS_VERSION)


def generate_answers(run, instructions, models, llm_cfg, *, max_new_tokens: int = 256, temperature: float = 0.0,
                     confirm_cost: bool = False, max_calls_without_confirm: int = 100) -> pd.DataFrame:
    """Every model's answer to every instruction: ``uuid, instruction, model, response, finish_reason, error``
    (a keyed step, its key in ``.attrs["key"]``; replies cached one by one, so a killed build resumes). `llm_cfg` is an `LLMConfig` (the
    `llm:` section) whose backend, model and endpoint each model row replaces."""
    inst, models = instruction_table(instructions), crowd_models(models)
    settings = GenerationSettings(temperature=temperature, max_new_tokens=max_new_tokens, seed=llm_cfg.seed)
    st = answers_step(run, inst, models, llm_cfg, settings).announce()
    if st.done:
        return _read_answers(st)
    convs = [[{"role": "user", "content": q}] for q in inst["instruction"]]
    clients = {r["model"]: make_llm(_client_cfg(llm_cfg, r), cache_dir=run.dir / "cache" / "llm")
               for _, r in models.iterrows()}
    paid = sum(c.estimate(convs, settings)["to_send"] for m, c in clients.items()
               if models.set_index("model").loc[m, "backend"] == "openai")
    if paid > max_calls_without_confirm and not confirm_cost:
        raise CostNotConfirmed(f"building the crowd would send {paid} requests to paid endpoints (more than "
                               f"max_calls_without_confirm={max_calls_without_confirm}); pass confirm_cost=True")
    frames = []
    with Progress(len(convs) * len(clients), "answering", unit="answer") as bar:
        for name, client in clients.items():
            replies = client.complete(convs, settings, skip_rejected=True, progress=bar)
            frames.append(inst.assign(model=name, response=[r.text for r in replies],
                                      finish_reason=[r.meta.get("finish_reason") for r in replies],
                                      error=[r.error for r in replies]))
    out = pd.concat(frames, ignore_index=True)[ANSWER_COLUMNS]
    write_parquet(out, st.path("answers.parquet"))
    st.finish(rows=len(out), refused=int(out["error"].notna().sum()),
              cut_at_max_new_tokens=int((out["finish_reason"] == "length").sum()))
    return _read_answers(st)                                 # the same table a rerun reads


def _read_answers(st: Step) -> pd.DataFrame:
    out = pd.read_parquet(st.dir / "answers.parquet")
    out.attrs["key"] = st.key                                # what `scoring.score_crowd` keys its step by
    return out
