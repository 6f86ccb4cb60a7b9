"""The run specification's schema: one dataclass per params section (house rule 2).

Sections are owned by the modules that read them (zoo, metrics, clustering, selection, scoring,
llm, baselines, training, judge, tables); each section lists its fields with the paper's value
where the paper gives one.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..runs.run import check_name
from ..runs.store import digest
from .base import TRAIN_METHODS, ConfigError, check_rules, home, seed_ok, weights_problem  # noqa: F401
from .data_sections import (ClusteringConfig, EmbeddingConfig, MetricsConfig, RewardModelConfig,  # noqa: F401
                            ScoringConfig, SelectionConfig, SubsetSpec, ZooConfig)
from .run_sections import (BaselinesConfig, GridCell, JudgeConfig, LLMConfig, TablesConfig,  # noqa: F401
                           TrainingConfig)
from .strict_yaml import dump_yaml


@dataclass
class RunSection:
    name: str = "demo"                 # artifacts go to <root>/<name>/
    root: str = "runs"                 # a relative path resolves against the params file's checkout
    seed: int = 0
    offline_demo: bool = True          # printed in every caption when true
    verbose: bool = False              # print every step's "reused ..." line too (run.log always has them)

    def __post_init__(self):
        try:
            check_name(self.name, "run.name")
        except ValueError as e:
            raise ConfigError(str(e)) from None
        self.root = home(self.root, "run.root")   # ~/runs is the user's home, never a folder named "~"
        check_rules(self, "run", [("seed", seed_ok(self.seed), "must be within 0 .. 2**32 - 1"),
                                  ("root", bool(self.root.strip()), "must be a folder")])


@dataclass
class RunConfig:
    run: RunSection = field(default_factory=RunSection)
    description: str = ""
    zoo: ZooConfig = field(default_factory=ZooConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    clustering: ClusteringConfig = field(default_factory=ClusteringConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    baselines: BaselinesConfig = field(default_factory=BaselinesConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    tables: TablesConfig = field(default_factory=TablesConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        """The resolved config, shown at the top of every executed notebook (house rule 1)."""
        return dump_yaml(self.to_dict())

    def digest(self) -> str:
        """Short hash of the resolved config (recorded in manifests)."""
        return digest(self.to_dict())
