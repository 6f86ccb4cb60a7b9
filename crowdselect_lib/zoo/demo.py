"""The offline demo zoo: a simulated crowd with planted truth (for teaching and testing only; not real data).

19 generator models in the 6 families of the paper's zoo answer `n` template-written instructions on 10 topics;
three simulated reward models grade them. What is planted, per instruction i (the truth table, `Zoo.truth`):

- a topic (10), which also shifts difficulty (`TOPIC_DIFFICULTY`: physics and law are harder than cooking);
- difficulty delta_i, spread sigma_i and size-following tau_i, drawn jointly: latent normals (z_d, z_s, z_t) with
  correlations `PLANTED_CORRELATION` (harder instructions spread the crowd more, and on them bigger models help
  more), then delta = topic shift + z_d, sigma = exp(0.4 z_s), tau = tanh(0.5 + 0.6 z_t) in (-1, 1);
- tau has mean ~0.4 > 0: on average bigger models of a family answer better (a size effect inside families, as
  in real zoos), but for a minority of instructions (tau < 0) the ranking is reversed: Stability (eq. 5) finds them.

The latent quality of model m's answer is  q_im = -delta_i + sigma_i (c tau_i g_m + eps_im),  eps ~ N(0, 1), with
g_m the model's size position inside its family (-1 smallest .. +1 largest) and c = `SIZE_EFFECT`. Reward model r
reports a_r + b_r q_im + noise_r N(0, 1), so the three scorers differ in scale and noise.

Instruction texts are not trivially separable by topic: half use the topic's own templates, the rest use generic
templates shared by every topic ("Give me three tips about {a}.") or bridge two topics ("How does {a} relate to
{b}?", planted topic = the first); the truth table records the planted topic and the text kind, so chapter 04's
clusters can be scored against it (ARI < 1 by design).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .model import Zoo, magpie_models

SIZE_EFFECT = 2.0
# Spearman-scale correlations of the latent normals behind (difficulty, spread, stability)
PLANTED_CORRELATION = {("difficulty", "spread"): 0.5, ("difficulty", "stability"): 0.3, ("spread", "stability"): 0.0}
KIND_SHARES = {"specific": 0.5, "generic": 0.35, "bridge": 0.15}
# name: (offset a_r, scale b_r, noise_r)
SIM_REWARD_MODELS = {
    "sim-Skywork-Reward-Llama-3.1-8B": (-4.0, 4.0, 2.0),
    "sim-Skywork-Reward-Gemma-2-27B": (-12.0, 8.0, 6.0),
    "sim-ArmoRM-Llama3-8B-v0.1": (0.10, 0.025, 0.025),
}
DEMO_DEFAULT_RM = "sim-Skywork-Reward-Llama-3.1-8B"
TOPIC_DIFFICULTY = {"cooking": -0.5, "python": 0.3, "travel": -0.3, "finance": 0.2, "physics": 0.6,
                    "history": 0.0, "gardening": -0.4, "fitness": -0.2, "music": 0.0, "law": 0.4}

# topic -> (templates with {a} and {b}, fillers a, fillers b)
TOPICS: dict[str, tuple[list[str], list[str], list[str]]] = {
    "cooking": (["Give me a recipe for {a} with {b}.", "How long should I bake {a} that contains {b}?",
                 "What spices go well with {a} and {b} in a home kitchen?", "Can I cook {a} in a pan without {b}?"],
                ["lasagna", "banana bread", "chicken curry", "vegetable soup", "pancakes", "risotto", "apple pie",
                 "beef stew"], ["fresh garlic", "butter", "coconut milk", "brown sugar", "mushrooms", "cheddar cheese"]),
    "python": (["Write a Python function that {a} using {b}.", "Why does my Python code that {a} raise an error with {b}?",
                "How do I unit test Python code that {a} with {b}?", "Refactor this Python script that {a} to use {b}."],
               ["parses a CSV file", "sorts a list of dictionaries", "reads JSON from an API", "merges two lists",
                "counts word frequencies", "renames files in a folder", "validates email addresses"],
               ["pandas", "a list comprehension", "the requests library", "pytest", "a generator", "regular expressions"]),
    "travel": (["Plan a three-day trip to {a} on {b}.", "What should I pack for a holiday in {a} when travelling by {b}?",
                "Which neighbourhoods of {a} are best for tourists on {b}?", "Is {a} safe to visit on {b}?"],
               ["Tokyo", "Lisbon", "Cape Town", "Buenos Aires", "Iceland", "Vietnam", "the Swiss Alps", "Morocco"],
               ["a tight budget", "a family vacation", "a honeymoon", "a backpacking tour", "a business trip"]),
    "finance": (["Should I invest in {a} or pay off {b} first?", "Explain how {a} affects my {b}.",
                 "How much of my salary should go to {a} given my {b}?", "What are the tax rules for {a} and {b}?"],
                ["index funds", "a retirement account", "government bonds", "real estate", "an emergency fund",
                 "company stock options"], ["student loans", "credit card debt", "mortgage", "monthly budget",
                                            "credit score", "savings rate"]),
    "physics": (["Derive the equation for {a} in {b}.", "Explain {a} to a first-year physics student using {b}.",
                 "Calculate {a} for an object moving under {b}.", "Why does {a} change when {b} is applied?"],
                ["kinetic energy", "angular momentum", "the period of a pendulum", "electric potential",
                 "thermal expansion", "wave interference", "gravitational force"],
                ["Newtonian mechanics", "special relativity", "a uniform magnetic field", "conservation laws",
                 "friction", "a spring force"]),
    "history": (["What caused {a} and how did it shape {b}?", "Summarise the role of {a} in {b}.",
                 "Compare {a} with other events of {b}.", "Write an essay outline on {a} and {b}."],
                ["the fall of the Roman Empire", "the French Revolution", "the Industrial Revolution",
                 "the Ming dynasty", "the Cold War", "the printing press", "the Silk Road trade"],
                ["medieval Europe", "the nineteenth century", "modern diplomacy", "colonial empires",
                 "ancient civilisations", "world politics"]),
    "gardening": (["When should I plant {a} in {b}?", "How often do I water {a} growing in {b}?",
                   "Why are the leaves of my {a} turning yellow in {b}?", "What fertiliser suits {a} in {b}?"],
                  ["tomatoes", "roses", "basil", "strawberries", "tulip bulbs", "lavender", "potatoes", "an apple tree"],
                  ["clay soil", "a shady garden", "raised beds", "containers on a balcony", "a greenhouse",
                   "sandy soil"]),
    "fitness": (["Create a workout plan to improve {a} with {b}.", "How many sets of {a} should a beginner do with {b}?",
                 "What should I eat before {a} when training with {b}?", "How can I avoid injury during {a} with {b}?"],
                ["squats", "marathon running", "push-ups", "swimming laps", "deadlifts", "cycling intervals",
                 "yoga stretches"], ["dumbbells", "a resistance band", "no equipment", "a personal trainer",
                                     "a heart-rate monitor", "kettlebells"]),
    "music": (["How do I play {a} on the {b}?", "Explain the music theory behind {a} for {b} players.",
               "Suggest exercises to master {a} on the {b}.", "Compose a short piece using {a} for the {b}."],
              ["a major scale", "jazz chords", "a blues progression", "vibrato", "syncopated rhythms",
               "a minor arpeggio", "fingerpicking patterns"], ["guitar", "piano", "violin", "saxophone", "ukulele",
                                                                "cello"]),
    "law": (["Is it legal for {a} to {b}?", "What does a contract clause about {a} mean if I {b}?",
             "Draft a letter to {a} because they {b}.", "What are my rights when {a} decides to {b}?"],
            ["my landlord", "an employer", "a neighbour", "a software vendor", "an insurance company", "a tenant"],
            ["keep my security deposit", "terminate the agreement early", "change the terms without notice",
             "refuse a refund", "share my personal data", "withhold my final paycheck"]),
}

GENERIC = ["Give me three tips about {a}.", "What are common beginner mistakes with {a}?",
           "Write a short blog post about {a}.", "Explain {a} to a ten-year-old.",
           "What should I know before I start with {a}?", "List the pros and cons of {a}."]
BRIDGE = ["How does {a} relate to {b}?", "Write a story that connects {a} and {b}.",
          "Compare {a} with {b} in a few sentences.", "I am interested in {a} and {b}: where do they overlap?"]
SUFFIXES = ["", " Keep it brief.", " Explain step by step.", " Give an example.", " Use simple language.",
            " Answer in a numbered list.", " Mention common mistakes.", " Be precise.", " Cite the key facts.",
            " Add a short summary at the end."]
# Short and fixed on purpose: with chapter 07's student (SmolLM2's tokenizer cut to 4,096 tokens) a strong answer is
# 31 tokens and a whole training row (system + user turn + answer + end of turn) about 110 at most, inside
# `training.max_length` (chapter 07 counts the rows that would be cut). An answer names its quality tier only, so
# the 2-layer student of the demo learns its three templates, and where they end, in 48 steps (an answer that
# repeated the instruction's subject needs a copying mechanism that student does not learn, and it never stopped).
QUALITY_TEXT = [
    "Weak answer: vague, misses the point",
    "Fair answer: the basics, one useful detail and a short example",
    "Strong answer: every part addressed step by step, a worked example, a common mistake and a summary",
]


def size_positions(models: pd.DataFrame) -> np.ndarray:
    """g_m: each model's size position inside its family, linearly from -1 (smallest) to +1 (largest)."""
    rank = models.groupby("family")["size_b"].rank(method="first") - 1
    count = models.groupby("family")["size_b"].transform("size")
    return np.where(count > 1, 2 * rank / (count - 1).clip(lower=1) - 1, 0.0)


def _latent_normals(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 3) normals with the Pearson correlations that give `PLANTED_CORRELATION` on the Spearman scale."""
    names = ["difficulty", "spread", "stability"]
    r = np.eye(3)
    for (a, b), rho in PLANTED_CORRELATION.items():
        i, j = names.index(a), names.index(b)
        r[i, j] = r[j, i] = 2 * np.sin(np.pi * rho / 6)        # Spearman rho -> Pearson of normals
    return rng.standard_normal((n, 3)) @ np.linalg.cholesky(r).T


def simulate_latent(n: int, seed: int, models: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Planted truth (n rows) and the latent answer quality q (n, n_models)."""
    rng = np.random.default_rng(seed)
    names = list(TOPICS)
    topic = rng.integers(0, len(names), n)
    z = _latent_normals(rng, n)
    delta = np.array([TOPIC_DIFFICULTY[t] for t in names])[topic] + z[:, 0]
    sigma = np.exp(0.4 * z[:, 1])
    tau = np.tanh(0.5 + 0.6 * z[:, 2])
    g = size_positions(models)
    quality = rng.standard_normal((n, len(g)))
    quality += SIZE_EFFECT * tau[:, None] * g[None, :]
    quality *= sigma[:, None]
    quality -= delta[:, None]
    spread = sigma * np.sqrt(1.0 + (SIZE_EFFECT * tau) ** 2 * np.mean(g ** 2))
    truth = pd.DataFrame({"topic": np.array(names)[topic], "difficulty": delta, "spread": spread,
                          "stability": tau, "follows_size": tau > 0})
    return truth, quality


def simulate_reward(quality: np.ndarray, reward_model: str, seed: int) -> np.ndarray:
    """One simulated reward model's scores a_r + b_r * q + noise_r * N(0, 1) (own random stream)."""
    a, b, noise = SIM_REWARD_MODELS[reward_model]
    rng = np.random.default_rng([seed, list(SIM_REWARD_MODELS).index(reward_model)])
    out = rng.standard_normal(quality.shape)
    out *= noise
    out += a + b * quality
    return out


def _pool(topic: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(texts, subjects) of every combination of one topic's templates of one kind."""
    names = list(TOPICS)
    templates, fill_a, fill_b = TOPICS[names[topic]]
    if kind == "specific":
        combos = [(t.format(a=a, b=b) + s, a) for t in templates for a in fill_a for b in fill_b for s in SUFFIXES]
    elif kind == "generic":
        combos = [(t.format(a=a) + s, a) for t in GENERIC for a in fill_a for s in SUFFIXES]
    else:
        others = [x for i, name in enumerate(names) if i != topic for x in TOPICS[name][1]]
        combos = [(t.format(a=a, b=b), a) for t in BRIDGE for a in fill_a for b in others]
    return np.array([c[0] for c in combos], dtype=object), np.array([c[1] for c in combos], dtype=object)


def instruction_texts(topic_idx: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(text, subject, kind) per row: a kind drawn with `KIND_SHARES`, then a random combination of that kind."""
    kinds = np.array(list(KIND_SHARES))
    kind_idx = rng.choice(len(kinds), size=len(topic_idx), p=list(KIND_SHARES.values()))
    text, subject = np.empty(len(topic_idx), dtype=object), np.empty(len(topic_idx), dtype=object)
    for t in range(len(TOPICS)):
        for k, kind in enumerate(kinds):
            rows = np.flatnonzero((topic_idx == t) & (kind_idx == k))
            if len(rows):
                texts, subj = _pool(t, kind)
                pick = rng.integers(0, len(texts), len(rows))
                text[rows], subject[rows] = texts[pick], subj[pick]
    return text, subject, kinds[kind_idx]


def planted_correlations(truth: pd.DataFrame) -> pd.DataFrame:
    """Spearman correlations between the planted difficulty, spread and stability of a demo zoo's truth table."""
    return truth[["difficulty", "spread", "stability"]].corr(method="spearman")


def demo_zoo(n: int = 3000, seed: int = 0) -> Zoo:
    """The simulated zoo: `n` (100 .. 3,000,000) instructions x 19 models x 3 simulated reward models."""
    if not 100 <= n <= 3_000_000:
        raise ValueError(f"demo zoo size must be within 100 .. 3,000,000 instructions, got {n}")
    models = magpie_models()
    truth, quality = simulate_latent(n, seed, models)
    scores = {rm: simulate_reward(quality, rm, seed) for rm in SIM_REWARD_MODELS}
    rng = np.random.default_rng([seed, 99])
    topic_idx = pd.Categorical(truth["topic"], categories=list(TOPICS)).codes
    text, _, kind = instruction_texts(topic_idx, rng)
    uuids = np.array([f"demo-{i:07d}" for i in range(n)], dtype=object)
    truth.index = pd.Index(uuids, name="uuid")
    truth["kind"] = kind

    m, names = len(models), models["model"].to_numpy(dtype=object)
    default = scores[DEMO_DEFAULT_RM]
    bucket = np.digitize(default, np.quantile(default, [1 / 3, 2 / 3]))   # terciles of the default scorer
    quality_text = np.array(QUALITY_TEXT, dtype=object)[bucket]            # (n, m)
    response = "[simulated] " + quality_text + "."
    cols = {"uuid": np.repeat(uuids, m), "instruction": np.repeat(text, m), "model": np.tile(names, n),
            "response": response.ravel()}
    categorical = n > 200_000   # millions of rows stay in memory as dictionary-encoded strings
    long = pd.DataFrame({k: pd.Categorical(v) if categorical else v for k, v in cols.items()})
    for rm, mat in scores.items():
        long[rm] = mat.ravel()
    return Zoo(long, models, list(SIM_REWARD_MODELS), "demo", DEMO_DEFAULT_RM, truth,
               info={"data_version": f"simulated(seed={seed}, n={n})"})
