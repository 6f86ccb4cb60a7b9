"""Benchmark: the crowd-size study (`crowdselect_lib.crowd_size`) on the real AlpacaEval zoo and a demo zoo.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_crowd_size.py [DATA_DIR] [--draws 50] [--k 100] [--ties official]
        [--minilm]

DATA_DIR: a local AlpacaEval zoo (instructions.parquet, responses.parquet); default ../shared/data/alpacaeval_zoo
beside the repository. Prints the study's time (wall and CPU) on the AlpacaEval zoo (every crowd size 3..56,
`--draws` draws each) and on the 3,000-instruction simulated demo zoo (19 models), the crowd size from which the
median Jaccard of the CrowdSelect top-k and each metric's median Spearman reach 0.9, leave-one-family-out for the
Stability families, and the Jaccard of the official code's uuid-string sort with the CrowdSelect subset. Clusters
for that last comparison: the five AlpacaEval subsets, or with `--minilm` K-means (10, seed 42, n_init 20) on
all-MiniLM-L6-v2 embeddings as chapter 04 does (about a minute on CPU).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from crowdselect_lib import crowd_size as C
from crowdselect_lib.zoo import load_zoo

REPO = Path(__file__).resolve().parents[1]


def timed(fn, *args, **kwargs):
    """(result, wall seconds, CPU seconds of this process)."""
    w, c = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - w, time.process_time() - c


def subset_clusters(zoo, data_dir: Path) -> pd.Series:
    """uuid -> AlpacaEval subset code (helpful_base, koala, oasst, selfinstruct, vicuna)."""
    inst = pd.read_parquet(data_dir / "instructions.parquet", columns=["instruction", "dataset"])
    sub = zoo.instructions().merge(inst, on="instruction", how="left").set_index("uuid")["dataset"]
    return pd.Series(pd.Categorical(sub).codes, index=sub.index, name="cluster")


def minilm_clusters(zoo) -> pd.Series:
    from crowdselect_lib.clustering import embed, kmeans

    inst = zoo.instructions()
    labels = kmeans(embed(inst["instruction"].tolist(), progress=False), 10, 42, 20)
    return pd.Series(np.asarray(labels), index=inst["uuid"], name="cluster")


def headline(name: str, zoo, draws: int, k: int, seed: int, ties: str) -> pd.DataFrame:
    study, wall, cpu = timed(C.crowd_size_study, zoo, draws=draws, k=k, seed=seed, ties=ties)
    n, m = zoo.scores().shape
    print(f"\n== {name}: {n} instructions x {m} models, k={k}, sizes 3..{m}, {draws} draws each "
          f"({study[['m', 'draw']].drop_duplicates().shape[0]} crowds)")
    print(f"study time: {wall:.1f} s wall, {cpu:.1f} s CPU")
    agree = C.agreement_size(study, 0.9)
    print("crowd size m from which the median reaches 0.9:", agree.to_dict())
    s = C.crowd_size_summary(study)
    pick = sorted({3, 5, 10, m // 2, m - 2, m - 1, m} & set(s["m"]))
    wide = s[s["m"].isin(pick)].pivot(index="m", columns="quantity", values="median")
    print("median Spearman per metric / Jaccard of the top-k, by crowd size:")
    print(wide.round(3).to_string())
    print("draws with no Stability family (share, by m):",
          study[study["metric"] == "stability"].groupby("m")["n_families"].apply(lambda x: (x == 0).mean())
          .loc[pick].round(2).to_dict())
    return study


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_dir", nargs="?", default=str(REPO.parent / "shared" / "data" / "alpacaeval_zoo"))
    ap.add_argument("--draws", type=int, default=50)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ties", choices=["official", "average"], default="official",
                    help="metrics.stability_ties (eq. 5's tie rule; the paper's params: official)")
    ap.add_argument("--minilm", action="store_true", help="official-sort clusters from MiniLM K-means (chapter 04)")
    args = ap.parse_args(argv)
    data_dir = Path(args.data_dir)

    zoo, wall, _ = timed(load_zoo, "alpacaeval", data_dir, drop_incomplete=True)
    print(f"AlpacaEval zoo loaded in {wall:.1f} s from {data_dir} "
          f"({zoo.info.get('dropped_incomplete', 0)} incomplete instructions dropped)")
    study = headline("AlpacaEval", zoo, args.draws, args.k, args.seed, args.ties)

    lofo, wall, _ = timed(C.leave_one_family_out, zoo, k=args.k, ties=args.ties)
    stab = lofo[lofo["in_stability"]].pivot(index="family", columns="metric", values="spearman")
    stab["jaccard"] = lofo[lofo["in_stability"]].groupby("family")["jaccard"].first()
    print(f"\nleave one family out ({lofo['family'].nunique()} families, {wall:.1f} s); the Stability families:")
    print(stab.round(3).to_string())
    other = lofo[~lofo["in_stability"]]
    same = int((other.loc[other["metric"] == "stability", "spearman"] == 1).sum())
    print(f"other families: Stability Spearman = 1 in {same} of {other['family'].nunique()}; "
          f"Jaccard median {other.groupby('family')['jaccard'].first().median():.3f}")

    clusters = minilm_clusters(zoo) if args.minilm else subset_clusters(zoo, data_dir)
    gap = C.official_sort_overlap(zoo, clusters, k=args.k, ties=args.ties)
    print(f"\nofficial uuid-string sort vs CrowdSelect ({'MiniLM K-means 10' if args.minilm else 'AlpacaEval subsets'}"
          f" as clusters, k={args.k}): {int(gap['shared'])} of {args.k} shared, Jaccard {gap['jaccard']:.3f}; "
          f"mean Stability {gap['stability_official']:.2f} vs {gap['stability_crowdselect']:.2f}")

    demo = load_zoo("demo", n_instructions=3000, seed=0)
    headline("demo zoo (simulated)", demo, args.draws, 300, args.seed, args.ties)

    a = C.agreement_size(study, 0.9)
    print(f"\nHEADLINE (AlpacaEval, k={args.k}): the CrowdSelect top-{args.k} agrees with the full crowd's at median "
          f"Jaccard >= 0.9 from m = {a['jaccard']} of {zoo.scores().shape[1]} models; Difficulty / Separability / "
          f"Stability Spearman >= 0.9 from m = {a['difficulty']} / {a['separability']} / {a['stability']}; "
          f"official-sort Jaccard {gap['jaccard']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
