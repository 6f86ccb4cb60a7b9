"""Real zoos behind `load_zoo` (paper §3.1 and a second, real crowd):

- ``magpie``: Magpie-Align/Magpie-100K-Generator-Zoo, the paper's data (100k instructions x 19 models x 3 reward
  models), via `datasets`, or local parquet shards of the same schema in `data_dir`.
- ``alpacaeval``: the 805 AlpacaEval instructions x 56 models. Its "score" is not a reward model: it is the
  GPT-4-turbo judge's weighted preference for the model's answer over a reference answer (gpt4_1106_preview),
  in [1, 2], higher = better; from the alpaca_eval repository's result files, or a local folder with
  ``instructions.parquet, responses.parquet``.

Text columns stay Python objects (never a fixed-width ``astype(str)`` array: one 50k-character instruction
would make every row of that array 200 kB wide).
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..runs import write_parquet
from .model import Zoo, ZooError, alpacaeval_models, magpie_models

MAGPIE_REPO = "Magpie-Align/Magpie-100K-Generator-Zoo"
MAGPIE_REWARD_MODELS = ["ArmoRM-Llama3-8B-v0.1", "Skywork-Reward-Llama-3.1-8B", "Skywork-Reward-Gemma-2-27B"]
DEFAULT_REWARD_MODEL = "Skywork-Reward-Llama-3.1-8B"

ALPACAEVAL_REWARD_MODEL = "alpaca_eval_gpt4_turbo_preference"
ALPACAEVAL_URL = ("https://raw.githubusercontent.com/tatsu-lab/alpaca_eval/main/results/"
                  "{model}/weighted_alpaca_eval_gpt4_turbo/annotations.json")
ALPACAEVAL_CACHE = Path.home() / ".cache" / "crowdselect" / "alpacaeval_zoo"


def input_files(source: str, data_dir: str | Path | None) -> list[Path]:
    """The local files a source reads (their contents key the zoo step); [] when it downloads."""
    if data_dir is None:
        return []
    d = Path(data_dir)
    if source == "magpie":
        return sorted(d.glob("**/*.parquet"))
    if source == "alpacaeval":
        return [p for p in (d / "instructions.parquet", d / "responses.parquet") if p.exists()]
    return []


def magpie_long(table) -> pd.DataFrame:
    """Arrow table with struct columns (one per model) -> long table, one column-wise pass per model."""
    import pyarrow as pa

    known = set(magpie_models()["model"])
    for col in ("uuid", "instruction"):
        if col not in table.column_names:
            raise ZooError(f"magpie data has no {col!r} column (columns: {table.column_names[:5]}...)")
    uuid = table.column("uuid").to_pandas()
    instr = table.column("instruction").to_pandas()
    parts = []
    for name in table.column_names:
        col = table.column(name)
        if not pa.types.is_struct(col.type):
            continue
        model = name.split("/")[-1]
        if model not in known:
            raise ZooError(f"magpie column {name!r} is a model without a family entry")
        col = col.combine_chunks()
        fields = {f.name for f in col.type}
        if "content" not in fields:
            raise ZooError(f"magpie column {name!r} has no 'content' field (fields: {sorted(fields)})")
        part = {"uuid": uuid, "instruction": instr, "model": model, "response": col.field("content").to_pandas()}
        for rm in MAGPIE_REWARD_MODELS:
            if rm in fields:
                part[rm] = col.field(rm).to_pandas()
        parts.append(pd.DataFrame(part))
    if not parts:
        raise ZooError("no model struct columns found in the magpie data")
    return pd.concat(parts, ignore_index=True)


def load_magpie(data_dir: str | Path | None, limit: int | None) -> Zoo:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if data_dir is not None:
        shards = input_files("magpie", data_dir)
        if not shards:
            raise FileNotFoundError(f"no parquet shards under {data_dir}")
        table = pa.concat_tables([pq.read_table(s) for s in shards])
        version = f"local:{data_dir}"
    else:  # needs network (or a populated HF cache)
        import datasets

        ds = datasets.load_dataset(MAGPIE_REPO, split="train")
        table = ds.data.table
        version = f"hf:{MAGPIE_REPO}@{getattr(ds, '_fingerprint', '?')}"
    if limit is not None:
        table = table.slice(0, limit)
    long = magpie_long(table)
    rms = [rm for rm in MAGPIE_REWARD_MODELS if rm in long.columns]
    if not rms:
        raise ZooError(f"magpie data carries none of the reward-model fields {MAGPIE_REWARD_MODELS}")
    default = DEFAULT_REWARD_MODEL if DEFAULT_REWARD_MODEL in rms else rms[0]
    return Zoo(long, magpie_models(), rms, "magpie", default, info={"data_version": version})


def download_alpacaeval(cache: Path = ALPACAEVAL_CACHE) -> Path:
    """Fetch each model's annotations from the alpaca_eval repository into the local layout (network)."""
    import urllib.request

    if (cache / "responses.parquet").exists():
        return cache
    frames = []
    for model in alpacaeval_models()["model"]:
        with urllib.request.urlopen(ALPACAEVAL_URL.format(model=model), timeout=60) as fh:
            frames.append(pd.DataFrame(json.load(fh)).assign(model=model))
    ann = pd.concat(frames, ignore_index=True)
    inst = (ann.drop_duplicates("instruction")[["instruction", "dataset", "output_1", "generator_1"]]
            .rename(columns={"output_1": "reference_output", "generator_1": "reference_model"}))
    resp = ann.rename(columns={"output_2": "output"})[["instruction", "model", "output", "preference"]]
    write_parquet(inst, cache / "instructions.parquet")
    write_parquet(resp, cache / "responses.parquet")
    return cache


def alpacaeval_instructions(data_dir: str | Path | None, limit: int | None = None) -> pd.DataFrame:
    """AlpacaEval's instructions with THE uuid of each (``alpacaeval-NNN``, file order), their reference answer
    (``reference_output``: GPT-4-turbo's, gpt4_1106_preview) and its model, `limit` first ones."""
    d = Path(data_dir) if data_dir is not None else download_alpacaeval()
    inst = pd.read_parquet(d / "instructions.parquet")
    if "instruction" not in inst.columns:
        raise ZooError(f"{d / 'instructions.parquet'} lacks column(s) ['instruction']")
    inst = inst.drop_duplicates("instruction")
    if limit is not None:
        inst = inst.iloc[:limit]
    return inst.assign(uuid=[f"alpacaeval-{i:03d}" for i in range(len(inst))]).reset_index(drop=True)


def load_alpacaeval(data_dir: str | Path | None, limit: int | None) -> Zoo:
    d = Path(data_dir) if data_dir is not None else download_alpacaeval()
    inst = alpacaeval_instructions(d)                   # `limit` below, after the orphan check
    resp = pd.read_parquet(d / "responses.parquet")
    for name, df, cols in (("instructions", inst, ["instruction"]),
                           ("responses", resp, ["instruction", "model", "output", "preference"])):
        miss = [c for c in cols if c not in df.columns]
        if miss:
            raise ZooError(f"{d / (name + '.parquet')} lacks column(s) {miss}")
    resp_all = resp
    orphan = ~resp["instruction"].isin(inst["instruction"]).to_numpy()   # before `limit`: not ours to drop silently
    if limit is not None:
        inst = inst.iloc[:limit]
    uuid_of = pd.Series(inst["uuid"].to_numpy(), index=inst["instruction"].to_numpy())
    resp = resp[resp["instruction"].isin(uuid_of.index)]
    long = pd.DataFrame({"uuid": uuid_of.reindex(resp["instruction"]).to_numpy(),
                         "instruction": resp["instruction"].to_numpy(), "model": resp["model"].to_numpy(),
                         "response": resp["output"].to_numpy(), ALPACAEVAL_REWARD_MODEL: resp["preference"].to_numpy()})
    info = {"data_version": f"local:{d}" if data_dir is not None else "alpaca_eval@main",
            "orphan_answers": int(orphan.sum())}
    if orphan.any():
        first = resp_all.loc[orphan].iloc[0]
        info["orphan_example"] = f"model {first['model']!r} answering {str(first['instruction'])[:60]!r}"
    return Zoo(long, alpacaeval_models(), [ALPACAEVAL_REWARD_MODEL], "alpacaeval", ALPACAEVAL_REWARD_MODEL, info=info)
