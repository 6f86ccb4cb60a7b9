"""Fine-tuning the student on a selected subset (appendix B.2, Table 6; Tables 9, 17; chapter 07).

- `data`      chat rows and their loss mask, preference pairs (chosen = eq. 2's best answer), end-of-turn token
- `trainers`  TRL trainers: SFT full / LoRA, DPO, SimPO, ORPO; precision, batch and checkpoint rules
- `fit`       one resumable training into a folder; `load_trained`, THE loader of trained students
- `run`       the stage: `subset_table`, `train_step` (keyed), `trained_systems` (THE discovery), `train_all`
- `views`     what the chapter shows: loss mask, loss curves, loss summary, a sample answer

Command line (also under ``accelerate launch``): ``python -m crowdselect_lib.training --params ... --subset ...
--method ...``. torch / transformers / TRL load only when a training or a model is touched.
"""
from .data import (METHODS, PAIR_COLUMNS, PREFERENCE_METHODS, SFT_METHODS, check_preference_rows, end_of_turn_positions,
                   end_of_turn_token,
                   loss_mask_table, mask_boundary, preference_pairs, preference_rows, rendered_preference_rows,
                   sft_rows, split_rows, use_end_of_turn)
from .fit import TEMPLATE_SAMPLE_FILE, TrainResult, last_checkpoint, load_trained, mean_loss, train
from .run import (SUMMARY_COLUMNS, TRAINING_VERSION, combinations, loss_history, run_training, step_name,
                  students, subset_kind, subset_names, subset_step, subset_table, system_name, train_all,
                  train_settings, train_step, trained_systems, training_rows)
from .trainers import build_trainer, experimental, learning_rate_for, precision_settings, steps_for, world_size
from .views import (OBJECTIVE, accelerate_command, end_of_turn_coverage, label_preview, loss_summary, plot_loss_curves, sample_answer,
                    subset_colours)

__all__ = ["METHODS", "SFT_METHODS", "PREFERENCE_METHODS", "PAIR_COLUMNS", "TEMPLATE_SAMPLE_FILE", "SUMMARY_COLUMNS",
           "TRAINING_VERSION", "OBJECTIVE", "TrainResult", "sft_rows", "check_preference_rows", "preference_pairs",
           "preference_rows", "rendered_preference_rows", "split_rows", "end_of_turn_token", "end_of_turn_positions", "end_of_turn_coverage", "use_end_of_turn",
           "loss_mask_table", "mask_boundary", "build_trainer", "experimental", "precision_settings", "steps_for",
           "learning_rate_for",
           "world_size", "train", "load_trained", "last_checkpoint", "mean_loss", "students", "subset_names",
           "subset_kind", "subset_step", "subset_table", "train_settings", "step_name", "train_step", "combinations",
           "system_name", "trained_systems", "training_rows", "run_training", "train_all", "loss_history",
           "label_preview", "loss_summary", "plot_loss_curves", "subset_colours", "sample_answer",
           "accelerate_command"]
