"""The edge-popup top-k: radix select of the k-th largest score, then one pass writing the mask or bits.

    popup_mask(scores, k)   1.0 at the k largest entries (ties toward the lower flat index), else 0.0
    popup_pack(scores, k)   the same mask as packed words [1, rows, nw], without a dense mask

How: every score maps to an unsigned key in the order of its value (fp16/bf16/fp32 through
fp32 and 32-bit keys, fp64 through 64-bit keys; -0.0 counts as 0.0 and NaN above +inf, as
`torch.sort` orders them). Then, 8 bits at a time from the top, a histogram kernel counts the
keys that share the prefix found so far and a one-program kernel picks the digit that holds the
k-th largest key. After 4 (8) passes the prefix is that key, `kth`, and `need` says how many keys
equal to it are kept. Only when some equal keys must be left out, a counting pass finds how many
ties each block holds, so the final pass can keep the first `need` in flat order; that pass keeps
`key > kth` and the ranked ties, writing the float mask and/or the packed words. Everything
stays on the device (no host synchronisation), and every sum is of integers (deterministic).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from impresslearn.format import num_words, rows_cols

from .runtime import cast, check_tensors, device_guard

HIST_BLOCK = 4096
WRITE_WORDS = 64  # words of 32 elements per program of the counting and writing passes


@triton.jit
def _sort_keys(x, WIDE: tl.constexpr):
    """Unsigned keys with the order of the values: flip every bit of negatives, the sign bit of the rest."""
    if WIDE:
        x = x.to(tl.float64)
        x = tl.where(x == 0, 0.0, x)  # -0.0 ties with 0.0
        bits = x.to(tl.uint64, bitcast=True)
        # `bits ^ all ones`, not `~bits`: triton 3.8's interpreter builds ~'s all-ones operand as -1,
        # which does not fit an unsigned type.
        key = tl.where((bits >> 63) != 0, bits ^ 0xFFFFFFFFFFFFFFFF, bits | 0x8000000000000000)
        key = tl.where(x != x, 0xFFFFFFFFFFFFFFFF, key)  # NaN above +inf, as torch.sort puts it
    else:
        x = x.to(tl.float32)
        x = tl.where(x == 0, 0.0, x)
        bits = x.to(tl.uint32, bitcast=True)
        key = tl.where((bits >> 31) != 0, bits ^ 0xFFFFFFFF, bits | 0x80000000)
        key = tl.where(x != x, 0xFFFFFFFF, key)
    return key


@triton.jit
def _state_key(state_ptr, WIDE: tl.constexpr):
    """The prefix found so far (after the last pass: the k-th largest key), stored as int64."""
    raw = tl.load(state_ptr)
    # One return statement: compiled Triton rejects returns of different types (the interpreter does not).
    if WIDE:
        key = raw.to(tl.uint64, bitcast=True)
    else:
        key = raw.to(tl.uint32)
    return key


@triton.jit
def _histogram_kernel(x_ptr, state_ptr, hist_ptr, numel, shift, FIRST: tl.constexpr, WIDE: tl.constexpr, BLOCK: tl.constexpr):
    """hist[d] += #keys whose digit at `shift` is d, among keys sharing the prefix above `shift + 8`."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = offs < numel
    key = _sort_keys(tl.load(x_ptr + offs, mask=valid, other=0.0), WIDE)
    if not FIRST:  # (a shift by the key's full width would be undefined)
        prefix = _state_key(state_ptr, WIDE)
        valid &= (key >> (shift + 8)) == (prefix >> (shift + 8))
    digit = ((key >> shift) & 255).to(tl.int32)
    counts = tl.histogram(digit, 256, mask=valid)
    bins = tl.arange(0, 256)
    tl.atomic_add(hist_ptr + bins, counts, mask=counts != 0)


@triton.jit
def _pick_digit_kernel(hist_ptr, state_ptr, shift):
    """Append to the prefix the digit whose bin holds the remaining k-th largest key.

    state: [prefix, remaining k, keys in the chosen bin, -].
    """
    bins = tl.arange(0, 256)
    counts = tl.load(hist_ptr + bins).to(tl.int64)
    remaining = tl.load(state_ptr + 1)
    at_or_above = tl.sum(counts, axis=0) - tl.cumsum(counts, axis=0) + counts  # non-increasing in the digit
    digit = tl.sum((at_or_above >= remaining).to(tl.int64), axis=0) - 1
    in_bin = tl.sum(tl.where(bins == digit, counts, 0), axis=0)
    above = tl.sum(tl.where(bins == digit, at_or_above, 0), axis=0) - in_bin
    tl.store(state_ptr, tl.load(state_ptr) | (digit << shift))
    tl.store(state_ptr + 1, remaining - above)
    tl.store(state_ptr + 2, in_bin)


@triton.jit
def _positions(pid, n_rows, n_cols, nw, PACKED: tl.constexpr, WORDS: tl.constexpr):
    """Flat indices [WORDS, 32] of a program's elements, in flat order, and which exist.

    PACKED: one row of the tile per packed word (rows padded to whole words); else 32 flat elements.
    """
    i = tl.arange(0, WORDS)[:, None]
    j = tl.arange(0, 32)[None, :]
    if PACKED:
        q = pid * WORDS + i
        col = (q % nw) * 32 + j
        valid = (q < n_rows * nw) & (col < n_cols)
        flat = (q // nw) * n_cols + col
    else:
        flat = (pid * WORDS + i) * 32 + j
        valid = flat < n_rows * n_cols
    return flat, valid


@triton.jit
def _count_ties_kernel(
    x_ptr, state_ptr, ties_ptr, n_rows, n_cols, nw, PACKED: tl.constexpr, WIDE: tl.constexpr, WORDS: tl.constexpr
):
    """ties[program] = #keys equal to kth in its block; skipped (0) when every tie is kept anyway."""
    pid = tl.program_id(0)
    kth = _state_key(state_ptr, WIDE)
    must_rank = tl.load(state_ptr + 1) < tl.load(state_ptr + 2)
    flat, valid = _positions(pid, n_rows, n_cols, nw, PACKED, WORDS)
    valid = tl.where(must_rank, valid, False)  # (bool & scalar bool is int32 in the interpreter)
    key = _sort_keys(tl.load(x_ptr + flat, mask=valid, other=0.0), WIDE)
    tl.store(ties_ptr + pid, tl.sum(tl.sum(((key == kth) & valid).to(tl.int32), axis=1), axis=0))


@triton.jit
def _write_kernel(
    x_ptr,
    state_ptr,
    ties_before_ptr,
    mask_ptr,
    words_ptr,
    n_rows,
    n_cols,
    nw,
    PACKED: tl.constexpr,
    WRITE_MASK: tl.constexpr,
    WIDE: tl.constexpr,
    WORDS: tl.constexpr,
):
    """Keep key > kth, and the first `need` keys equal to kth in flat order."""
    pid = tl.program_id(0)
    kth = _state_key(state_ptr, WIDE)
    need = tl.load(state_ptr + 1)
    flat, valid = _positions(pid, n_rows, n_cols, nw, PACKED, WORDS)
    key = _sort_keys(tl.load(x_ptr + flat, mask=valid, other=0.0), WIDE)
    tie = ((key == kth) & valid).to(tl.int32)
    per_row = tl.sum(tie, axis=1)
    rank = (
        tl.load(ties_before_ptr + pid) + (tl.cumsum(per_row, axis=0) - per_row)[:, None] + tl.cumsum(tie, axis=1) - tie
    )  # ties before this one, in flat order
    keep = valid & ((key > kth) | ((tie != 0) & (rank < need)))
    if WRITE_MASK:
        tl.store(mask_ptr + flat, cast(tl.where(keep, 1.0, 0.0), mask_ptr.dtype.element_ty), mask=valid)
    if PACKED:
        q = pid * WORDS + tl.arange(0, WORDS)
        j = tl.arange(0, 32)[None, :]
        # Distinct powers of two: the int32 sum is the bitwise or (bit 31 wraps to the sign, as packed).
        word = tl.sum(keep.to(tl.int32) << j, axis=1)
        tl.store(words_ptr + q, word, mask=q < n_rows * nw)


def _kth_state(flat: torch.Tensor, k: int) -> torch.Tensor:
    """Radix select: state [kth key, how many keys equal to it are kept, keys equal to it, -]."""
    wide = flat.dtype == torch.float64
    key_bits = 64 if wide else 32
    n_pass = key_bits // 8
    hist = torch.zeros((n_pass, 256), dtype=torch.int32, device=flat.device)
    state = torch.zeros(4, dtype=torch.int64, device=flat.device)
    state[1] = k
    grid = (triton.cdiv(flat.numel(), HIST_BLOCK),)
    for p in range(n_pass):
        shift = key_bits - 8 * (p + 1)
        _histogram_kernel[grid](flat, state, hist[p], flat.numel(), shift, FIRST=p == 0, WIDE=wide, BLOCK=HIST_BLOCK)
        _pick_digit_kernel[(1,)](hist[p], state, shift)
    return state


def _select(scores: torch.Tensor, k: int, packed: bool, write_mask: bool):
    check_tensors(scores)
    flat = scores.reshape(-1)
    wide = flat.dtype == torch.float64
    rows, cols = rows_cols(scores.shape) if packed else (1, flat.numel())
    nw = num_words(cols) if packed else 0
    units = rows * nw if packed else triton.cdiv(flat.numel(), 32)
    grid = (triton.cdiv(units, WRITE_WORDS),)
    mask = torch.empty_like(flat) if write_mask else None
    words = torch.empty((1, rows, nw), dtype=torch.int32, device=flat.device) if packed else None
    with device_guard(flat):
        state = _kth_state(flat, k)
        ties = torch.empty(grid[0], dtype=torch.int32, device=flat.device)
        _count_ties_kernel[grid](flat, state, ties, rows, cols, nw, PACKED=packed, WIDE=wide, WORDS=WRITE_WORDS)
        ties_before = torch.cumsum(ties, 0) - ties
        _write_kernel[grid](
            flat,
            state,
            ties_before,
            mask if write_mask else flat,
            words if packed else ties,
            rows,
            cols,
            nw,
            PACKED=packed,
            WRITE_MASK=write_mask,
            WIDE=wide,
            WORDS=WRITE_WORDS,
        )
    return mask, words


def popup_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """1.0 at the `k` largest entries of `scores` (ties toward the lower flat index), else 0.0."""
    mask, _ = _select(scores, k, packed=False, write_mask=True)
    return mask.reshape(scores.shape)


def popup_pack(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The `popup_mask` as packed words `[1, rows, nw]`, written without a dense mask."""
    _, words = _select(scores, k, packed=True, write_mask=False)
    return words
