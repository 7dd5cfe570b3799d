"""The wire format of the run server: multipart ZeroMQ messages, JSON first, raw numpy buffers after.

A message is ``[header, buffer_0, buffer_1, ...]``. The header is UTF-8 JSON (at most
MAX_HEADER_BYTES). An array anywhere in the data travels as ``{"__ndarray__": k, "dtype": "<f8",
"shape": [h, w]}`` pointing at buffer ``k``; decoding checks the dtype against a short list of plain
numeric types, the shape against the buffer's length and the total against MAX_MESSAGE_BYTES.
Nothing is ever unpickled. Requests: ``{"token": str, "command": str, "args": {...}}``; replies:
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": str}``; events (publish socket):
topic frame, then ``{"event": str, "data": ...}``.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

MAX_HEADER_BYTES = 1_000_000
MAX_MESSAGE_BYTES = 256_000_000
MAX_DEPTH = 32
DTYPES = {"|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f4", "<f8", "|b1"}


class MessageError(ValueError):
    """A message that is not of the protocol (bad JSON, buffer mismatch, forbidden dtype, too big)."""


def _clean(value: Any, buffers: list[bytes], depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise MessageError(f"data nested deeper than {MAX_DEPTH}")
    if isinstance(value, np.ndarray):
        arr = np.ascontiguousarray(value)
        if arr.dtype.str not in DTYPES:
            raise MessageError(f"array dtype {arr.dtype.str} cannot be sent; expected one of {sorted(DTYPES)}")
        buffers.append(arr.tobytes())
        return {"__ndarray__": len(buffers) - 1, "dtype": arr.dtype.str, "shape": list(arr.shape)}
    if isinstance(value, dict):
        return {str(k): _clean(v, buffers, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v, buffers, depth + 1) for v in value]
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def encode(data: Any) -> list[bytes]:
    """``data`` (JSON-able, with numpy arrays anywhere) as message frames; NaN/inf become null."""
    buffers: list[bytes] = []
    header = json.dumps(_clean(data, buffers), allow_nan=False).encode()
    return [header, *buffers]


def _restore(value: Any, buffers: Sequence[bytes], depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise MessageError(f"data nested deeper than {MAX_DEPTH}")
    if isinstance(value, dict):
        if "__ndarray__" in value:
            k, dtype, shape = value.get("__ndarray__"), value.get("dtype"), value.get("shape")
            if not (isinstance(k, int) and 0 <= k < len(buffers)):
                raise MessageError(f"array refers to buffer {k!r}; the message has {len(buffers)}")
            if dtype not in DTYPES:
                raise MessageError(f"array dtype {dtype!r}: expected one of {sorted(DTYPES)}")
            if not (isinstance(shape, list) and len(shape) <= 8
                    and all(isinstance(n, int) and n >= 0 for n in shape)):
                raise MessageError(f"array shape {shape!r}: expected a list of sizes >= 0")
            dt = np.dtype(dtype)
            if math.prod(shape) * dt.itemsize != len(buffers[k]):
                raise MessageError(f"array of shape {shape} {dtype} needs {math.prod(shape) * dt.itemsize} "
                                   f"bytes; buffer {k} has {len(buffers[k])}")
            return np.frombuffer(buffers[k], dtype=dt).reshape(shape)
        return {k: _restore(v, buffers, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore(v, buffers, depth + 1) for v in value]
    return value


def decode(frames: Sequence[bytes]) -> Any:
    """The data of message ``frames``; MessageError for anything not of the protocol."""
    if not frames:
        raise MessageError("empty message")
    total = sum(len(f) for f in frames)
    if total > MAX_MESSAGE_BYTES:
        raise MessageError(f"message of {total} bytes; at most {MAX_MESSAGE_BYTES}")
    head = bytes(frames[0])
    if len(head) > MAX_HEADER_BYTES:
        raise MessageError(f"header of {len(head)} bytes; at most {MAX_HEADER_BYTES}")
    try:
        data = json.loads(head.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MessageError(f"header is not UTF-8 JSON: {exc}") from None
    except RecursionError:
        raise MessageError("header nested too deeply") from None
    return _restore(data, [bytes(f) for f in frames[1:]])


def request(token: str, command: str, **args: Any) -> list[bytes]:
    """The frames of a request."""
    return encode({"token": token, "command": command, "args": args})


def parse_request(frames: Sequence[bytes]) -> tuple[str, str, dict[str, Any]]:
    """``(token, command, args)`` of a request; MessageError if malformed."""
    data = decode(frames)
    if not isinstance(data, dict):
        raise MessageError("a request is a JSON object {token, command, args}")
    token, command, args = data.get("token"), data.get("command"), data.get("args", {})
    if not isinstance(token, str):
        raise MessageError("request without a token (string)")
    if not isinstance(command, str) or not command:
        raise MessageError("request without a command (string)")
    if not isinstance(args, dict):
        raise MessageError(f"command {command!r}: args must be an object, got {type(args).__name__}")
    return token, command, args
