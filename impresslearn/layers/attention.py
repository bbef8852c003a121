"""`nn.MultiheadAttention` with masked projections.

PyTorch's attention calls `F.multi_head_attention_forward` with its own `in_proj_weight` and
`out_proj.weight`, so replacing `out_proj` by a mask layer would be bypassed and the projections
would stay shared and trainable. `TaskMultiheadAttention` holds the input projection (one `[3E, E]`
layer, or one per query, key and value when their sizes differ) and the output projection as mask
layers and passes their effective weights to the same function (docs/design.md §4.5). Under a
task per sample or a per-sample mixture the projections have no one weight: the attention is then
computed here from the projection layers' own outputs (the same function, written out).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


class TaskMultiheadAttention(nn.Module):
    """The forward of `nn.MultiheadAttention` (same arguments, same results for the same weights)
    over mask layers: `in_proj` (or `q_proj`, `k_proj`, `v_proj`) and `out_proj`, each a layer with
    `effective_weight()` and a `bias` (a SupSup, Impress or kernel-mask layer). The input bias and
    `bias_k` / `bias_v` are frozen buffers."""

    def __init__(
        self,
        mha: nn.MultiheadAttention,
        *,
        in_proj: nn.Module | None = None,
        q_proj: nn.Module | None = None,
        k_proj: nn.Module | None = None,
        v_proj: nn.Module | None = None,
        out_proj: nn.Module,
    ):
        super().__init__()
        self.embed_dim, self.num_heads, self.head_dim = mha.embed_dim, mha.num_heads, mha.head_dim
        self.kdim, self.vdim, self.batch_first = mha.kdim, mha.vdim, mha.batch_first
        self.dropout, self.add_zero_attn = mha.dropout, mha.add_zero_attn
        self.separate = mha.in_proj_weight is None  # kdim or vdim differs from embed_dim
        if self.separate != (in_proj is None) or (self.separate and None in (q_proj, k_proj, v_proj)):
            raise ValueError("give in_proj for one shared input projection, q_proj, k_proj and v_proj for separate ones")
        self.in_proj, self.q_proj, self.k_proj, self.v_proj, self.out_proj = in_proj, q_proj, k_proj, v_proj, out_proj
        for key in ("in_proj_bias", "bias_k", "bias_v"):
            value = getattr(mha, key)
            self.register_buffer(key, None if value is None else value.detach().clone())

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        batched = query.dim() == 3
        if any(m.rows is not None or m.probe is not None for m in self._projections()):
            return self._per_sample(query, key, value, key_padding_mask, need_weights, attn_mask, average_attn_weights, is_causal)
        if self.batch_first and batched:
            query, key, value = (t.transpose(1, 0) for t in (query, key, value))
        if self.separate:
            projections = dict(
                in_proj_weight=None,
                use_separate_proj_weight=True,
                q_proj_weight=self.q_proj.effective_weight(),
                k_proj_weight=self.k_proj.effective_weight(),
                v_proj_weight=self.v_proj.effective_weight(),
            )
            in_bias = self.in_proj_bias
        else:
            projections = dict(in_proj_weight=self.in_proj.effective_weight())
            in_bias = self.in_proj.bias
        out, weights = F.multi_head_attention_forward(
            query,
            key,
            value,
            self.embed_dim,
            self.num_heads,
            in_proj_bias=in_bias,
            bias_k=self.bias_k,
            bias_v=self.bias_v,
            add_zero_attn=self.add_zero_attn,
            dropout_p=self.dropout,
            out_proj_weight=self.out_proj.effective_weight(),
            out_proj_bias=self.out_proj.bias,
            training=self.training,
            key_padding_mask=key_padding_mask,
            need_weights=need_weights,
            attn_mask=attn_mask,
            average_attn_weights=average_attn_weights,
            is_causal=is_causal,
            **projections,
        )
        if self.batch_first and batched:
            out = out.transpose(1, 0)
        return out, weights

    def _projections(self) -> list[nn.Module]:
        found = [self.q_proj, self.k_proj, self.v_proj] if self.separate else [self.in_proj]
        return [m for m in [*found, self.out_proj] if hasattr(m, "rows")]

    def _per_sample(self, query, key, value, key_padding_mask, need_weights, attn_mask, average_attn_weights, is_causal):
        """The attention with each projection a layer call (each sample under its own task)."""
        if query.dim() != 3:
            raise ValueError("a task per sample needs a batch: query, key and value of 3 dimensions")
        if self.bias_k is not None or self.add_zero_attn:
            raise NotImplementedError("a task per sample is not supported with bias_k, bias_v or add_zero_attn")
        if not self.batch_first:  # the layers take the batch first: the task of each sample is dim 0
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        e = self.embed_dim
        if self.separate:
            biases = (None, None, None) if self.in_proj_bias is None else self.in_proj_bias.chunk(3)
            q, k, v = (
                proj(t) if b is None else proj(t) + b
                for proj, t, b in zip((self.q_proj, self.k_proj, self.v_proj), (query, key, value), biases)
            )
        elif query is key and key is value:
            q, k, v = self.in_proj(query).split(e, dim=-1)
        else:
            q, k, v = (self.in_proj(t)[..., i * e : (i + 1) * e] for i, t in enumerate((query, key, value)))
        b, lq, ls = query.shape[0], query.shape[1], key.shape[1]
        heads = lambda t, n: t.reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)  # noqa: E731
        q, k, v = heads(q, lq), heads(k, ls), heads(v, ls)
        if attn_mask is None and is_causal:
            attn_mask = torch.ones(lq, ls, dtype=torch.bool, device=q.device).triu(1)
        # one additive mask of what may not be attended: attn_mask (True or -inf: not allowed) and the padding
        mask = None
        if attn_mask is not None:
            mask = attn_mask.reshape(-1, self.num_heads, lq, ls) if attn_mask.dim() == 3 else attn_mask
            mask = (
                torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill(mask, float("-inf"))
                if mask.dtype == torch.bool
                else mask
            )
        if key_padding_mask is not None:
            pad = key_padding_mask.reshape(b, 1, 1, ls)
            pad = (
                torch.zeros(pad.shape, dtype=q.dtype, device=q.device).masked_fill(pad, float("-inf"))
                if pad.dtype == torch.bool
                else pad
            )
            mask = pad if mask is None else mask + pad
        dropout = self.dropout if self.training else 0.0
        if need_weights:  # the weights themselves are asked for: the product written out
            scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
            weights = (scores if mask is None else scores + mask).softmax(-1)
            context = F.dropout(weights, dropout) @ v if dropout else weights @ v
        else:  # the fused kernel (as nn.MultiheadAttention uses when no weights are asked for)
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        out = self.out_proj(context.transpose(1, 2).reshape(b, lq, e))
        if not self.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        return out, weights.mean(1) if average_attn_weights else weights

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, batch_first={self.batch_first}"
