"""Minimal reader for CTranslate2 model.bin files (binary version 6 as written by ctranslate2 4.x).

Layout (little endian): u32 binary_version; str spec_name; u32 spec_revision; u32 num_variables;
then per variable: str name, u8 rank, u32 dims[rank], u8 dtype, u32 num_bytes, raw data;
then u32 num_aliases and per alias: str alias, str target.
str = u16 length (including the trailing NUL) + bytes + NUL.
dtype: 0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16 (returned as raw uint16).
"""
import struct

import numpy as np

DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: np.uint16}


def read_ct2(path):
    """Return (binary_version, spec_name, spec_revision, {name: ndarray}, {alias: target})."""
    with open(path, "rb") as f:
        buf = f.read()
    off = 0

    def take(fmt):
        nonlocal off
        vals = struct.unpack_from("<" + fmt, buf, off)
        off += struct.calcsize("<" + fmt)
        return vals

    def string():
        nonlocal off
        (n,) = take("H")
        s = buf[off : off + n - 1].decode("utf-8")
        off += n
        return s

    (version,) = take("I")
    if version < 5:
        raise ValueError(f"unsupported CTranslate2 binary version {version}")
    spec = string()
    (revision,) = take("I")
    (count,) = take("I")
    variables = {}
    for _ in range(count):
        name = string()
        (rank,) = take("B")
        dims = take("I" * rank) if rank else ()
        (dtype_id,) = take("B")
        (nbytes,) = take("I")
        dt = np.dtype(DTYPES[dtype_id])
        arr = np.frombuffer(buf, dtype=dt, count=nbytes // dt.itemsize, offset=off).reshape(dims)
        off += nbytes
        variables[name] = arr
    aliases = {}
    (nalias,) = take("I")
    for _ in range(nalias):
        alias = string()
        aliases[alias] = string()
    if off != len(buf):
        raise ValueError(f"trailing bytes: parsed {off} of {len(buf)}")
    return version, spec, revision, variables, aliases
