"""Minimal safetensors writer and reader written with struct/json (no dependency on the
`safetensors` package). Used by tools/convert_checkpoint.py and the golden-file scripts.

Layout: u64 little-endian header length N, N bytes of JSON header (padded with spaces to a multiple
of 8), then the data buffer; each tensor's "data_offsets" are relative to the buffer start.
"""
import json
import struct

import torch

_DTYPES = {
    torch.float64: ("F64", 8),
    torch.float32: ("F32", 4),
    torch.float16: ("F16", 2),
    torch.bfloat16: ("BF16", 2),
    torch.int64: ("I64", 8),
    torch.int32: ("I32", 4),
    torch.int16: ("I16", 2),
    torch.int8: ("I8", 1),
    torch.uint8: ("U8", 1),
    torch.bool: ("BOOL", 1),
}
_BY_NAME = {name: (dtype, size) for dtype, (name, size) in _DTYPES.items()}


def _tensor_bytes(t):
    t = t.detach().cpu().contiguous()
    if t.dtype in (torch.float16, torch.bfloat16):
        # numpy has no bfloat16: view the 16-bit patterns as int16 (same bytes).
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def serialize(tensors, metadata=None):
    """tensors: dict name -> torch.Tensor (any dtype listed above). Returns bytes."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    chunks = []
    offset = 0
    for name, t in tensors.items():
        if t.dtype not in _DTYPES:
            raise ValueError(f"tensor {name!r}: dtype {t.dtype} has no safetensors equivalent")
        data = _tensor_bytes(t)
        header[name] = {"dtype": _DTYPES[t.dtype][0], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def write(path, tensors, metadata=None):
    with open(path, "wb") as f:
        f.write(serialize(tensors, metadata))


def read(path):
    """Returns (dict name -> torch.Tensor, metadata dict). Light validation only: the C++ reader is
    the strict one."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    metadata = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, info in header.items():
        dtype, size = _BY_NAME[info["dtype"]]
        b, e = info["data_offsets"]
        buf = bytearray(raw[base + b:base + e])
        if dtype in (torch.float16, torch.bfloat16):
            t = torch.frombuffer(buf, dtype=torch.int16).view(dtype) if buf else torch.empty(0, dtype=dtype)
        else:
            t = torch.frombuffer(buf, dtype=dtype) if buf else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(info["shape"]).clone()
    return out, metadata
