"""Reward scoring: grade every (instruction, response) of a zoo with a reward model (paper §3.1, Table 18;
chapter 02). The zoo's score matrix S (eqs. 3-5) comes from reward models: the paper uses
Skywork-Reward-Llama-3.1-8B and repeats the study with ArmoRM-Llama3-8B-v0.1 and Skywork-Reward-Gemma-2-27B;
Magpie ships all three. This package scores a zoo that has none, re-scores with another reward model, or
re-scores a sample to check the shipped scores.

- `registry`: the reward models and how each is loaded and called (batch, length, attention, BOS rule, remote code)
- `scorer`:   `RewardScorer`, a loaded model: chat formatting, right-padded batches, truncation
- `cache`:    the fine-grained score cache by (model settings, max_length, text), resumable shards
- `steps`:    `scores_step` / `run_scores` / `load_run_scores` / `sample_check` / `score_zoo`, the command line
- `crowd`:    `score_crowd`, scoring a crowd built from instructions alone (`zoo.build`)
- `checks`:   `verify_scores`, `agreement`, `reward_model_agreement`, `attach_scores`
- `plots`:    chapter 02's figures
"""
from . import plots
from .cache import ROW_COLUMNS, SCORE_COLUMNS, ScoreCache, check_rows, collect, pair_keys, score_rows
from .crowd import score_crowd
from .checks import agreement, attach_scores, reward_model_agreement, sample_rows, verify_scores
from .registry import (REWARD_MODELS, TINY_REWARD, RewardModelSpec, ScoringError, registry_table, resolve_spec,
                       reward_model_spec, tiny_reward_model)
from .scorer import RewardScorer, encode_chats
from .steps import load_run_scores, main, run_scores, sample_check, score_zoo, scores_step

__all__ = ["REWARD_MODELS", "TINY_REWARD", "RewardModelSpec", "RewardScorer", "ScoringError", "ScoreCache",
           "ROW_COLUMNS", "SCORE_COLUMNS", "agreement", "attach_scores", "check_rows", "collect", "encode_chats",
           "load_run_scores", "main", "pair_keys", "plots", "registry_table", "resolve_spec", "reward_model_agreement", "run_scores",
           "sample_check", "sample_rows", "score_crowd", "score_rows", "score_zoo", "scores_step", "tiny_reward_model",
           "verify_scores"]
