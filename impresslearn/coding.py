"""A finished task's masks in their smallest exact form, and what each form costs
(docs/design.md §2.8).

Three forms of one binary mask of `n` weights, `k` of them kept:

    packed   the compute format: 1 bit per weight, rows padded to 32-bit words (PackedMasks)
    sparse   SupSup's paper's count: a 16-bit index per kept weight (2k bytes)
    coded    entropy-coded for cold storage: a range coder over the bits with a Bernoulli model
             at the mask's own density k/n (constriction), about n·H(k/n)/8 bytes; lzma over the
             packed bits where that is smaller; all-zero and all-one masks as their count alone

`code_mask(bits)` returns the coded bytes (a tag, the count, the payload) and `decode_mask(data,
n)` gives the same bits back exactly; `mask_forms(bits)` counts the three forms.

A task's quantised alphas (integer codes in [-L, L], layers/quantise.py) are coded the same way by
`code_levels`: a range coder whose model adapts as it goes (each code's probability from the
counts of the codes before it, every count starting at 1/2), so that nothing but the codes is
stored and a peaked distribution costs its entropy plus a few bytes per layer; `decode_levels`
inverts it.
"""

from __future__ import annotations

import lzma
import math
import struct

import numpy as np
import torch
from torch import Tensor

from .format import num_words, pack_bits, rows_cols, unpack_bits

INDEX_BYTES = 2  # SupSup stores sparse masks with 16-bit indices
_HEADER = struct.Struct("<cQ")  # tag, count of kept weights
_RANGE, _LZMA, _CONSTANT = b"R", b"L", b"C"


def _bernoulli(n: int, k: int):
    import constriction  # a compiled entropy-coding library, needed only for cold storage

    # p from the stored count alone, so the decoder rebuilds exactly the encoder's model
    return constriction.stream.model.Bernoulli(k / n, perfect=False)


def code_mask(bits: Tensor) -> bytes:
    """The mask `bits` (any shape, bool or 0/1) as its smallest coded form; `decode_mask` inverts it."""
    flat = bits.detach().reshape(-1).to(torch.bool).cpu().numpy()
    n, k = flat.size, int(flat.sum())
    if k in (0, n):
        return _HEADER.pack(_CONSTANT, k)
    import constriction

    encoder = constriction.stream.queue.RangeEncoder()
    encoder.encode(flat.astype(np.int32), _bernoulli(n, k))
    ranged = encoder.get_compressed().astype("<u4").tobytes()
    packed = lzma.compress(np.packbits(flat).tobytes(), preset=9 | lzma.PRESET_EXTREME)
    tag, payload = (_RANGE, ranged) if len(ranged) <= len(packed) else (_LZMA, packed)
    return _HEADER.pack(tag, k) + payload


def decode_mask(data: bytes, numel: int) -> Tensor:
    """The bool bits `[numel]` that `code_mask` coded into `data`."""
    if len(data) < _HEADER.size:
        raise ValueError(f"a coded mask holds at least {_HEADER.size} bytes, got {len(data)}")
    tag, k = _HEADER.unpack_from(data)
    payload = data[_HEADER.size :]
    if not 0 <= k <= numel:
        raise ValueError(f"a coded mask keeps {k} of {numel} weights: not a mask of this size")
    if tag == _CONSTANT:
        if k not in (0, numel):
            raise ValueError(f"a constant mask keeps none or all of {numel} weights, not {k}")
        return torch.full((numel,), k == numel, dtype=torch.bool)
    if tag == _RANGE:
        import constriction

        if len(payload) % 4:
            raise ValueError("a range-coded mask is whole 32-bit words")
        decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(payload, dtype="<u4").astype(np.uint32))
        flat = decoder.decode(_bernoulli(numel, k), numel).astype(bool)
    elif tag == _LZMA:
        flat = np.unpackbits(np.frombuffer(lzma.decompress(payload), dtype=np.uint8))[:numel].astype(bool)
    else:
        raise ValueError(f"unknown coded-mask form {tag!r}")
    if flat.size != numel or int(flat.sum()) != k:
        raise ValueError(f"a coded mask decoded to {int(flat.sum())} of {flat.size} weights, not {k} of {numel}")
    return torch.from_numpy(flat.copy())


def _adaptive_rows(symbols: np.ndarray, m: int) -> np.ndarray:
    """The model of each symbol (rows of probabilities over `m` values): counts of the symbols
    before it, each starting at 1/2 (the Krichevsky-Trofimov estimator)."""
    seen = np.zeros((symbols.size + 1, m))
    seen[np.arange(1, symbols.size + 1), symbols] = 1.0
    counts = np.cumsum(seen, axis=0)[:-1] + 0.5
    return counts / counts.sum(1, keepdims=True)


def code_levels(codes: Tensor, levels: int) -> bytes:
    """Integer codes in [-levels, levels] (any shape), range-coded with the adaptive model; the
    count is the decoder's to know (the alphas' shape)."""
    import constriction

    flat = codes.detach().reshape(-1).to(torch.int64).cpu().numpy()
    if flat.size and (flat.min() < -levels or flat.max() > levels):
        raise ValueError(f"codes must lie in [-{levels}, {levels}], got [{flat.min()}, {flat.max()}]")
    symbols = (flat + levels).astype(np.int32)
    if not symbols.size:
        return b""
    encoder = constriction.stream.queue.RangeEncoder()
    model = constriction.stream.model.Categorical(perfect=False)
    encoder.encode(symbols, model, _adaptive_rows(symbols, 2 * levels + 1))
    return encoder.get_compressed().astype("<u4").tobytes()


def decode_levels(data: bytes, count: int, levels: int) -> Tensor:
    """The int8 codes `[count]` that `code_levels` coded into `data`."""
    import constriction

    if len(data) % 4:
        raise ValueError("coded alphas are whole 32-bit words")
    if not count:
        return torch.zeros(0, dtype=torch.int8)
    m = 2 * levels + 1
    decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
    model = constriction.stream.model.Categorical(perfect=False)
    counts, out = np.full((1, m), 0.5), np.empty(count, dtype=np.int64)
    for i in range(count):  # each code's model needs the codes before it: one at a time
        out[i] = decoder.decode(model, counts / counts.sum())[0]
        counts[0, out[i]] += 1.0
    return torch.from_numpy(out - levels).to(torch.int8)


def mask_forms(bits: Tensor) -> dict[str, int]:
    """Bytes of one mask over a weight of `bits.shape` in each form: `packed` (rows padded to
    32-bit words), `sparse` (16-bit indices) and `coded` (`code_mask`), and `entropy`, the
    bound n·H(k/n)/8 the coder approaches."""
    rows, cols = rows_cols(tuple(bits.shape))
    n, k = bits.numel(), int(bits.sum())
    p = k / n if n else 0.0
    h = 0.0 if p in (0.0, 1.0) else -(p * math.log2(p) + (1 - p) * math.log2(1 - p))
    return {
        "packed": 4 * rows * num_words(cols),
        "sparse": INDEX_BYTES * k,
        "coded": len(code_mask(bits)),
        "entropy": math.ceil(n * h / 8),
    }


def task_forms(masks: dict[str, Tensor]) -> dict[str, int]:
    """`mask_forms` summed over a task's masks (layer name -> bool mask of the weight's shape)."""
    total = {"packed": 0, "sparse": 0, "coded": 0, "entropy": 0}
    for bits in masks.values():
        for form, nbytes in mask_forms(bits).items():
            total[form] += nbytes
    return total


def join_coded(parts: list[bytes]) -> tuple[Tensor, Tensor]:
    """Coded parts as tensors a file holds: their bytes one after another (uint8) and each one's
    length (int64); `split_coded` inverts it."""
    joined = b"".join(parts)
    data = torch.frombuffer(bytearray(joined), dtype=torch.uint8) if joined else torch.zeros(0, dtype=torch.uint8)
    return data, torch.tensor([len(p) for p in parts], dtype=torch.int64)


def split_coded(data: Tensor, lengths: Tensor) -> list[bytes]:
    """The parts `join_coded` joined, after checking that the tensors can hold them."""
    if data.dtype != torch.uint8 or lengths.dtype != torch.int64 or data.dim() != 1 or lengths.dim() != 1:
        raise ValueError("coded parts are uint8 bytes with int64 lengths, both one-dimensional")
    if bool((lengths < 0).any()) or int(lengths.sum()) != data.numel():
        raise ValueError(f"the coded parts' lengths add up to {int(lengths.sum())}, not their {data.numel()} bytes")
    raw, out, at = data.numpy().tobytes(), [], 0
    for n in lengths.tolist():
        out.append(raw[at : at + n])
        at += n
    return out


def code_words(words: Tensor, cols: int) -> tuple[Tensor, Tensor]:
    """Every mask of packed words `[T, rows, nw]` (rows of `cols` bits) coded: the bytes of all,
    one after another (uint8), and each one's length (int64 `[T]`)."""
    return join_coded([code_mask(b) for b in unpack_bits(words.cpu(), cols)])


def decode_words(data: Tensor, lengths: Tensor, rows: int, cols: int) -> Tensor:
    """The packed words `[T, rows, nw]` that `code_words` coded into `data` and `lengths`."""
    out = [decode_mask(part, rows * cols).reshape(rows, cols) for part in split_coded(data, lengths)]
    bits = torch.stack(out) if out else torch.zeros(0, rows, cols, dtype=torch.bool)
    return pack_bits(bits)


__all__ = [
    "code_levels",
    "code_mask",
    "code_words",
    "decode_levels",
    "decode_mask",
    "decode_words",
    "join_coded",
    "mask_forms",
    "split_coded",
    "task_forms",
]
