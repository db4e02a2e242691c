"""safetensors.numpy.save_file with a byte-reproducible header.

safetensors serialises the header (and the __metadata__ map) from a hash map, so key order,
and thus the file bytes, change from run to run. save_file() below writes with
safetensors.numpy.save_file and then rewrites the JSON header with sorted keys, padded with
spaces to the original header length (the data section is untouched).
"""
import json
import os
import struct

from safetensors.numpy import save_file as _save_file


def save_file(tensors, path, metadata=None):
    _save_file(tensors, path, metadata=metadata)
    with open(path, "r+b") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n).decode("utf-8"))
        if "__metadata__" in header:
            header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        canon = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if len(canon) > n:
            raise ValueError("canonical header longer than the original")
        f.seek(8)
        f.write(canon + b" " * (n - len(canon)))
    os.chmod(path, 0o644)
