"""The one device rule, `quiet()` for notebooks, and where local model folders live (`cache_root`, `publish`)."""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Iterator

_NOISY_LOGGERS = ["transformers", "sentence_transformers", "huggingface_hub", "accelerate", "torch", "gguf",
                  "transformers_modules", "peft", "datasets"]


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence library warnings, info logs and progress bars (GGUF conversion, "Writing model shards",
    "Batches", torch/transformers warnings, tqdm's "IProgress not found") for the duration; errors still raise."""
    bars = os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS")
    tf_logging, tf_bars = None, False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        try:   # first: importing transformers may warn, and it sets its own log level
            from transformers.utils import logging as tf_logging

            tf_bars = tf_logging.is_progress_bar_enabled()
            tf_logging.disable_progress_bar()
        except ImportError:  # transformers not installed: nothing of it to quiet
            pass
        saved = {n: logging.getLogger(n).level for n in _NOISY_LOGGERS}
        for n in _NOISY_LOGGERS:
            logging.getLogger(n).setLevel(logging.ERROR)
        try:
            yield
        finally:
            for n, level in saved.items():
                logging.getLogger(n).setLevel(level)
            if bars is None:
                os.environ.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
            else:
                os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = bars
            if tf_bars:
                tf_logging.enable_progress_bar()


def device_and_dtype(device: str | None = None, dtype: str = "auto"):
    """The package's one device rule: `device` None = ``cuda`` when available, else ``cpu``; `dtype` ``auto`` =
    bfloat16 on CUDA, float32 on CPU, else the named torch dtype. Returns (device string, torch.dtype)."""
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype == "auto":
        return device, (torch.bfloat16 if device.startswith("cuda") else torch.float32)
    if not isinstance(getattr(torch, str(dtype), None), torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r} (use auto, float32, bfloat16 or float16)")
    return device, getattr(torch, dtype)


def cache_root() -> Path:
    """Where converted local models live (override with CROWDSELECT_MODEL_CACHE)."""
    env = os.environ.get("CROWDSELECT_MODEL_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "crowdselect" / "models"


def publish(out: Path, write) -> Path:
    """Write a model folder under a private temporary name, then rename it to `out`. When several processes
    write at once, the first rename wins and the others discard their copy."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    try:
        with quiet():
            write(tmp)
        tmp.rename(out)
    except OSError:
        if not (out / "config.json").exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
