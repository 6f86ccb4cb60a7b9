"""Local model loading (crowdselect_lib.models, scoring.scorer) on tiny RANDOM models of the paper's architectures,
built and saved here, offline: a jina-embeddings-v3-shaped XLM-R embedder with remote code, an ArmoRM-shaped
Llama reward model with remote code (a gating head, ``output.score``), and a Skywork-shaped Llama sequence
classifier on a Llama-3-style tokenizer that adds BOS. The remote code files import exactly the names the real
models' code imports and transformers 5 removed."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from crowdselect_lib import models
from crowdselect_lib.config import EmbeddingConfig
from crowdselect_lib.scoring import RewardModelSpec, RewardScorer, ScoringError, encode_chats
from crowdselect_lib.clustering import embed

JINA_CODE = '''
from transformers import XLMRobertaModel
from transformers.models.xlm_roberta.modeling_xlm_roberta import create_position_ids_from_input_ids


class TinyJinaModel(XLMRobertaModel):
    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        kwargs.pop("position_ids", None)
        pos = create_position_ids_from_input_ids(input_ids, self.config.pad_token_id)
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, position_ids=pos, **kwargs)
'''

ARMO_CODE = '''
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn
from transformers import LlamaModel, LlamaPreTrainedModel
from transformers.models.llama.modeling_llama import LLAMA_INPUTS_DOCSTRING
from transformers.utils import ModelOutput, add_start_docstrings_to_model_forward


@dataclass
class GatedRewardOutput(ModelOutput):
    score: Optional[torch.FloatTensor] = None
    rewards: Optional[torch.FloatTensor] = None


class TinyRewardWithGating(LlamaPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.model = LlamaModel(config)
        self.regression_layer = nn.Linear(config.hidden_size, 3, bias=False)
        self.gate = nn.Linear(config.hidden_size, 3, bias=False)
        self.post_init()

    @add_start_docstrings_to_model_forward(LLAMA_INPUTS_DOCSTRING)
    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        h = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        h = h[torch.arange(h.shape[0]), attention_mask.sum(-1) - 1]
        rewards = self.regression_layer(h)
        weights = torch.softmax(self.gate(h), dim=-1)
        return GatedRewardOutput(score=(rewards * weights).sum(-1, keepdim=True), rewards=rewards)
'''

LLAMA3_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|start_header_id|> {{ m['role'] }} <|end_header_id|> "
                   "{{ m['content'] }} <|eot_id|> {% endfor %}")


def _add_remote_code(folder: Path, module: str, cls: str, auto: str) -> None:
    (folder / f"{module}.py").write_text(JINA_CODE if module.startswith("tiny_jina") else ARMO_CODE)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["auto_map"] = {auto: f"{module}.{cls}"}
    cfg["architectures"] = [cls]
    (folder / "config.json").write_text(json.dumps(cfg))


@pytest.fixture(scope="module")
def jina_like(tmp_path_factory) -> Path:
    """A sentence-transformers folder: tiny random XLM-R whose remote code imports create_position_ids_from_input_ids."""
    from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaModel

    out = tmp_path_factory.mktemp("jina") / "tiny-jina-v3"
    tok = AutoTokenizer.from_pretrained(models.resolve_embedder(models.MINILM))
    cfg = XLMRobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=80, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    XLMRobertaModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    _add_remote_code(out, "tiny_jina_modeling", "TinyJinaModel", "AutoModel")
    (out / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (out / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64, "do_lower_case": False}))
    (out / "1_Pooling").mkdir()
    (out / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32,
                                                               "pooling_mode_mean_tokens": True}))
    return out


def _llama_classifier(out: Path, tok, num_labels: int = 1, cls=None):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256, num_labels=num_labels,
                      pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(1)
    model = (cls or LlamaForSequenceClassification)(cfg)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return model


def llama3_style_tokenizer(template_has_bos: bool = True):
    """A word-level tokenizer that adds <|begin_of_text|> like Llama 3's, with a Llama-3-style chat template."""
    from tokenizers import Tokenizer, models as tm, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    special = ["<pad>", "<unk>", "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
               "<|eot_id|>"]
    words = "user assistant the cat sat on a mat why is sky blue because light scatters".split()
    vocab = {w: i for i, w in enumerate(special + words)}
    tk = Tokenizer(tm.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.add_special_tokens(special)
    tk.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                      special_tokens=[("<|begin_of_text|>", vocab["<|begin_of_text|>"])])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                  pad_token="<pad>", unk_token="<unk>")
    tok.chat_template = LLAMA3_TEMPLATE if template_has_bos else LLAMA3_TEMPLATE.replace("{{ bos_token }}", "")
    return tok


# --------------------------------------------------------------------------- the shim

def test_compat_shim_restores_the_removed_names(monkeypatch):
    import transformers.models.llama.modeling_llama as llama
    import transformers.models.xlm_roberta.modeling_xlm_roberta as xlmr

    monkeypatch.delattr(xlmr, "create_position_ids_from_input_ids", raising=False)
    monkeypatch.delattr(llama, "LLAMA_INPUTS_DOCSTRING", raising=False)
    added = models.remote_code_compat()
    assert "transformers.models.xlm_roberta.modeling_xlm_roberta.create_position_ids_from_input_ids" in added
    assert "transformers.models.llama.modeling_llama.LLAMA_INPUTS_DOCSTRING" in added
    assert isinstance(llama.LLAMA_INPUTS_DOCSTRING, str)
    # RoBERTa positions, padding_idx 1: real tokens count from 2, padding stays 1; with 3 cached tokens, from 5
    ids = torch.tensor([[0, 5, 6, 1, 1], [7, 8, 9, 10, 11]])
    assert xlmr.create_position_ids_from_input_ids(ids, 1).tolist() == [[2, 3, 4, 1, 1], [2, 3, 4, 5, 6]]
    assert xlmr.create_position_ids_from_input_ids(ids, 1, 3).tolist() == [[5, 6, 7, 1, 1], [5, 6, 7, 8, 9]]
    assert models.remote_code_compat() == []          # idempotent


def test_remote_code_is_detected_from_the_files_not_the_name(jina_like, tmp_path):
    assert models.remote_code_entries(str(jina_like)) == ["tiny_jina_modeling.TinyJinaModel"]
    assert models.remote_code_entries(models.resolve_embedder(models.MINILM)) == []
    (tmp_path / "modules.json").write_text(json.dumps([{"type": "custom_st.Transformer"}]))
    (tmp_path / "config.json").write_text("{}")
    assert models.remote_code_entries(str(tmp_path)) == ["custom_st.Transformer"]
    with pytest.raises(models.RemoteCodeRefused, match=r"embedding.trust_remote_code: true"):
        models.check_remote_code(str(tmp_path), None, False, "embedding.trust_remote_code")


# --------------------------------------------------------------------------- jina-v3-shaped embedder

def test_jina_shaped_embedder_loads_through_the_shim(jina_like, tmp_path, monkeypatch):
    import transformers.models.xlm_roberta.modeling_xlm_roberta as xlmr
    from sentence_transformers import SentenceTransformer

    monkeypatch.delattr(xlmr, "create_position_ids_from_input_ids", raising=False)
    if not hasattr(xlmr, "create_position_ids_from_input_ids"):   # transformers 5: its remote code cannot import
        with pytest.raises(ImportError, match="create_position_ids_from_input_ids"):
            SentenceTransformer(str(jina_like), device="cpu", trust_remote_code=True)
    with pytest.raises(models.RemoteCodeRefused, match="embedding.trust_remote_code"):
        models.load_embedder(str(jina_like))
    st = models.load_embedder(str(jina_like), trust_remote_code=True, device="cpu")
    assert type(st[0].auto_model).__name__ == "TinyJinaModel"
    texts = ["why is the sky blue", "the cat sat on a mat", "why is the sky blue"]
    e = EmbeddingConfig(model=str(jina_like), trust_remote_code=True, task=None, batch_size=2, device="cpu",
                        pooling="model")   # the model's own pooling, compared with st.encode below
    vecs = embed(texts, e, tmp_path)
    assert vecs.shape == (3, 32) and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(vecs[0], vecs[2])
    assert not np.allclose(vecs[0], vecs[1])
    direct = st.encode(texts[:2], normalize_embeddings=True)
    np.testing.assert_allclose(vecs[:2], direct, atol=1e-5)


# --------------------------------------------------------------------------- ArmoRM-shaped reward model

def test_armorm_shaped_reward_model_needs_opt_in_and_reads_score(tmp_path, monkeypatch):
    import importlib.util

    import transformers.models.llama.modeling_llama as llama
    from transformers import AutoModelForSequenceClassification

    models.remote_code_compat()                  # so the class can be built here; then removed again below
    (tmp_path / "armo_local.py").write_text(ARMO_CODE)
    spec = importlib.util.spec_from_file_location("armo_local", tmp_path / "armo_local.py")
    local = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(local)
    out = tmp_path / "tiny-armorm"
    ref = _llama_classifier(out, models.load_tokenizer("tiny-llama"), cls=local.TinyRewardWithGating).eval()
    _add_remote_code(out, "tiny_armo_modeling", "TinyRewardWithGating", "AutoModelForSequenceClassification")

    monkeypatch.delattr(llama, "LLAMA_INPUTS_DOCSTRING", raising=False)
    if not hasattr(llama, "LLAMA_INPUTS_DOCSTRING"):
        with pytest.raises(ImportError, match="LLAMA_INPUTS_DOCSTRING"):
            AutoModelForSequenceClassification.from_pretrained(out, trust_remote_code=True)
    rm = RewardModelSpec("ArmoRM-Llama3-8B-v0.1", str(out), kind="armorm", bos="template")
    with pytest.raises(models.RemoteCodeRefused, match=r"scoring.models.ArmoRM-Llama3-8B-v0.1.trust_remote_code"):
        RewardScorer(rm, device="cpu")
    scorer = RewardScorer(RewardModelSpec(**{**rm.settings(), "trust_remote_code": True}), device="cpu")
    assert scorer.remote_code == ["tiny_armo_modeling.TinyRewardWithGating"]
    ids, _ = scorer.encode(["why is the sky blue", "hi"], ["because light scatters", "hello there"])
    got = scorer.score(ids)
    with torch.no_grad():
        want = [float(ref(input_ids=torch.tensor([x]), attention_mask=torch.ones(1, len(x), dtype=torch.long)).score)
                for x in ids]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- Skywork-shaped: exactly one BOS

@pytest.mark.parametrize("template_has_bos", [True, False])
def test_bos_rules_on_a_llama3_style_tokenizer(template_has_bos):
    tok = llama3_style_tokenizer(template_has_bos)
    bos = tok.bos_token_id
    q, a = ["why is the sky blue"], ["because light scatters"]
    single = encode_chats(tok, q, a, "single")[0]
    assert single[0] == bos and single.count(bos) == 1
    naive = tok(tok.apply_chat_template([{"role": "user", "content": q[0]}, {"role": "assistant", "content": a[0]}],
                                        tokenize=False))["input_ids"]
    assert naive.count(bos) == (2 if template_has_bos else 1)          # the duplicate the card removes
    assert encode_chats(tok, q, a, "template")[0].count(bos) == (1 if template_has_bos else 0)
    assert single[1:] == [t for t in naive if t != bos]


def test_skywork_shaped_classifier_scores_as_its_card(tmp_path):
    tok = llama3_style_tokenizer(True)
    ref = _llama_classifier(tmp_path / "tiny-skywork", tok).eval()
    scorer = RewardScorer(RewardModelSpec("Skywork-Reward-Llama-3.1-8B", str(tmp_path / "tiny-skywork"),
                                          attn_implementation="auto"), device="cpu")
    assert scorer.attn_implementation == "sdpa" and scorer.dtype == "float32"   # auto on CPU: sdpa, fp32
    q, a = ["why is the sky blue", "the cat sat"], ["because light scatters", "on a mat"]
    ids, n = scorer.encode(q, a)
    got = scorer.score(ids)                            # one padded batch of two lengths
    for i in range(2):   # the card: template text, leading BOS removed, tokenized with special tokens, one row
        text = tok.apply_chat_template([{"role": "user", "content": q[i]}, {"role": "assistant", "content": a[i]}],
                                       tokenize=False)
        card = tok(text[len(tok.bos_token):], return_tensors="pt")
        with torch.no_grad():
            assert got[i] == pytest.approx(float(ref(**card).logits[0][0]), abs=1e-5)
        assert n[i] == card["input_ids"].shape[1]
    _llama_classifier(tmp_path / "two", tok, num_labels=2)
    with pytest.raises(ScoringError, match="num_labels=2; a reward model has one"):
        RewardScorer(RewardModelSpec("x", str(tmp_path / "two")), device="cpu")


def test_device_rule_and_quiet():
    import logging
    import warnings

    dev, dt = models.device_and_dtype("cpu", "auto")
    assert (dev, dt) == ("cpu", torch.float32) and models.device_and_dtype("cpu", "bfloat16")[1] == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype 'fp8'"):
        models.device_and_dtype("cpu", "fp8")
    import transformers  # noqa: F401  (importing it sets its logger's level; quiet restores that one)

    level = logging.getLogger("transformers").level
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with models.quiet():
            warnings.warn("noise")
            assert logging.getLogger("transformers").level == logging.ERROR
    assert seen == [] and logging.getLogger("transformers").level == level


def test_truncated_bpe_keeps_the_first_ids_and_still_encodes_every_text():
    from tokenizers import Tokenizer

    spec = json.loads((models.smollm2_path() / "tokenizer.json").read_text())
    cut = models.truncated_bpe(spec, 600)
    assert sorted(cut["model"]["vocab"].values()) == list(range(600))          # exactly the first 600 ids
    assert all(a in cut["model"]["vocab"] and b in cut["model"]["vocab"] and a + b in cut["model"]["vocab"]
               for a, b in cut["model"]["merges"])
    full, small = Tokenizer.from_str(json.dumps(spec)), Tokenizer.from_str(json.dumps(cut))
    text = "Explain how vaccines train the immune system — café, naïve, 日本語 🙂 <|im_end|>"
    ids = small.encode(text).ids
    same = full.decode(full.encode(text).ids, skip_special_tokens=False)
    assert max(ids) < 600 and small.decode(ids, skip_special_tokens=False) == same   # the same text back
    assert len(ids) > len(full.encode(text).ids)                                # fewer merges, more tokens
    with pytest.raises(ValueError, match=re.escape("special token '<|im_start|>' has id 1 >= 1")):
        models.truncated_bpe(spec, 1)
    with pytest.raises(ValueError, match="needs a BPE tokenizer"):
        models.truncated_bpe({**spec, "model": {**spec["model"], "type": "WordPiece"}}, 600)


def test_tiny_llama_is_small_and_speaks_the_chat_template():
    tok, model = models.load_causal_lm(models.TINY_ALIAS)
    assert len(tok) == model.config.vocab_size == 4096
    ids = tok.apply_chat_template([{"role": "user", "content": "Hi there"}], add_generation_prompt=True)
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    assert tok.decode(ids).startswith("<|im_start|>") and max(ids) < 4096
