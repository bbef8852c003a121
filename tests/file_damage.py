"""Ways to damage a safetensors file, for the tests of the readers (checkpoints, basis files,
training states): flipped bits, edited headers, files as an older impresslearn wrote them."""

import json

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save


def split(data: bytes) -> tuple[dict, bytes]:
    """(the safetensors JSON header, the data region) of a file's bytes."""
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def join(header: dict, region: bytes) -> bytes:
    """Bytes with `header` (padded with spaces to 8 bytes, as safetensors does) before `region`."""
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + region


def data_start(data: bytes) -> int:
    return 8 + int.from_bytes(data[:8], "little")


def entry_range(data: bytes, entry: str) -> tuple[int, int]:
    """The file offsets [begin, end) of one tensor's bytes."""
    header, _ = split(data)
    begin, end = header[entry]["data_offsets"]
    return data_start(data) + begin, data_start(data) + end


def entry_at(data: bytes, offset: int) -> str:
    """The name of the tensor whose bytes hold file offset `offset`."""
    header, _ = split(data)
    for name, info in header.items():
        if name != "__metadata__":
            begin, end = info["data_offsets"]
            if data_start(data) + begin <= offset < data_start(data) + end:
                return name
    raise ValueError(f"offset {offset} is in no tensor")


def flip_bit(data: bytes, offset: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[offset] ^= 1 << bit
    return bytes(out)


def set_dtype(data: bytes, entry: str, dtype: str) -> bytes:
    """The header of `entry` edited to declare `dtype` (a safetensors name: "F32", "I32", ...)."""
    header, region = split(data)
    header[entry]["dtype"] = dtype
    return join(header, region)


def metadata(data: bytes) -> dict:
    return split(data)[0].get("__metadata__", {})


def rewrite(data: bytes, key: str, edit=None, *, tensors=None) -> bytes:
    """The file written again as a current impresslearn would write it (fresh checksums), after
    `edit(header)` and with `tensors` (default: the file's) in place of its tensors."""
    from impresslearn.files import CHECKSUMS, safetensors_bytes

    header = json.loads(metadata(data)[key])
    header.pop(CHECKSUMS, None)
    if edit is not None:
        edit(header)
    return safetensors_bytes(st_load(data) if tensors is None else tensors, key, header)


def as_legacy(data: bytes, key: str, field: str = "format_version", edit=None, *, tensors=None) -> bytes:
    """The file as impresslearn wrote it before checksums: version 1, no "sha256" field, no header
    digest; after `edit(header)` and with `tensors` in place of the file's, if given."""
    from impresslearn.files import CHECKSUMS

    header = json.loads(metadata(data)[key])
    header.pop(CHECKSUMS, None)
    header[field] = 1
    if edit is not None:
        edit(header)
    blob = st_load(data) if tensors is None else tensors
    return st_save({n: t.contiguous() for n, t in blob.items()}, metadata={key: json.dumps(header)})


def tensors_of(data: bytes) -> dict[str, torch.Tensor]:
    return st_load(data)


def data_offsets(data: bytes, count: int = 6) -> list[int]:
    """`count` offsets spread over the data region (first byte, last byte and between)."""
    start, end = data_start(data), len(data)
    return sorted({start + (end - 1 - start) * i // (count - 1) for i in range(count)})


def one_sentence(message: str) -> bool:
    """No line breaks and no sentence ends inside (a file name's dots are followed by no space)."""
    return "\n" not in message and ". " not in message.rstrip(".")
