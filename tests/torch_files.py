"""Write PyTorch checkpoint files by hand, without torch, for the reader's tests.

The object pickle is assembled opcode by opcode (protocol 2, as ``torch.save`` writes it), so it
can name ``torch._utils._rebuild_tensor_v2`` or ``torch.FloatStorage`` without importing torch,
and so it can name ``os.system`` for the malicious-file tests. Values that can be written:
dicts (as ``collections.OrderedDict``), lists, tuples, str, int, float, bool, None, NumPy arrays
(each its own contiguous storage), :class:`Strided` tensors (views, shared storages),
:class:`Global` (a bare global) and :class:`Call` (any global called with arguments).
"""

from __future__ import annotations

import pickle
import shlex
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

STORAGE_NAMES = {
    np.dtype(np.float64): "DoubleStorage",
    np.dtype(np.float32): "FloatStorage",
    np.dtype(np.float16): "HalfStorage",
    np.dtype(np.int64): "LongStorage",
    np.dtype(np.int32): "IntStorage",
    np.dtype(np.int16): "ShortStorage",
    np.dtype(np.int8): "CharStorage",
    np.dtype(np.uint8): "ByteStorage",
    np.dtype(np.bool_): "BoolStorage",
}


@dataclass(frozen=True, eq=False)
class Strided:
    """A tensor ``t[i] = storage[offset + sum_k i_k stride_k]`` over a flat ``storage``.

    Tensors given the very same ``storage`` object share one storage in the file.
    ``view_of=(root, start)`` (legacy format only) says that ``storage`` is
    ``root[start : start + storage.size]`` and is written as a storage view of ``root``.
    ``storage_type`` overrides the storage name (e.g. ``"BFloat16Storage"`` over uint16 bits).
    """

    storage: np.ndarray
    offset: int
    shape: tuple
    stride: tuple
    view_of: tuple | None = None
    storage_type: str | None = None

    def expected(self) -> np.ndarray:
        """What a correct reader returns: the strided view, copied."""
        itemsize = self.storage.itemsize
        view = np.lib.stride_tricks.as_strided(
            self.storage[self.offset :], self.shape, tuple(s * itemsize for s in self.stride)
        )
        return view.copy()


@dataclass(frozen=True)
class Global:
    """A bare reference ``module.name`` in the pickle (GLOBAL), e.g. ``torch.FloatStorage``."""

    module: str
    name: str


@dataclass(frozen=True)
class Call:
    """``module.name(*args)`` in the pickle: a GLOBAL, the argument tuple, REDUCE."""

    module: str
    name: str
    args: tuple = field(default_factory=tuple)


def marker_payload(marker: Path, how: str = "os.system") -> Call:
    """A call that creates the file ``marker`` when unpickled (proof that code ran)."""
    if how == "os.system":
        return Call("os", "system", (f"touch {shlex.quote(str(marker))}",))
    if how == "builtins.eval":
        return Call("builtins", "eval", (f"open({str(marker)!r}, 'w').close()",))
    raise ValueError(how)


def malicious_pickle(marker: Path, how: str = "os.system") -> bytes:
    """The payload alone as a complete pickle: ``pickle.loads`` of it creates ``marker``."""
    return b"\x80\x02" + _Writer("zip").value(marker_payload(marker, how)) + b"."


# --- the opcode writer -------------------------------------------------------------------------


def _global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def _str(text: str) -> bytes:
    raw = text.encode("utf-8")
    return b"X" + struct.pack("<I", len(raw)) + raw  # BINUNICODE


def _int(n: int) -> bytes:
    if -(2**31) <= n < 2**31:
        return b"J" + struct.pack("<i", n)  # BININT
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw  # LONG1


class _Writer:
    """Emits the object pickle and collects the storages it refers to (by identity)."""

    def __init__(self, layout: str, tensor_style: str = "v2"):
        self.layout = layout  # "zip" (5-field persistent ids) or "legacy" (6 fields)
        self.tensor_style = tensor_style  # "v1" (2017), "v2", or "parameter"
        self.storages: dict[int, tuple[str, np.ndarray]] = {}  # id(root) -> (key, root)
        self.views: dict[int, str] = {}  # id(view storage) -> view key (legacy layout)

    def key_of(self, array: np.ndarray) -> str:
        if id(array) not in self.storages:
            count = len(self.storages)
            key = str(count) if self.layout == "zip" else str(10_000 + count)  # any unique text
            self.storages[id(array)] = (key, array)
        return self.storages[id(array)][0]

    def value(self, obj) -> bytes:
        if obj is None:
            return b"N"
        if isinstance(obj, bool):
            return b"\x88" if obj else b"\x89"
        if isinstance(obj, int):
            return _int(obj)
        if isinstance(obj, float):
            return b"G" + struct.pack(">d", obj)
        if isinstance(obj, str):
            return _str(obj)
        if isinstance(obj, tuple):
            return b"(" + b"".join(self.value(v) for v in obj) + b"t"
        if isinstance(obj, list):
            return b"](" + b"".join(self.value(v) for v in obj) + b"e"
        if isinstance(obj, dict):
            items = b"".join(self.value(k) + self.value(v) for k, v in obj.items())
            return _global("collections", "OrderedDict") + b")R(" + items + b"u"
        if isinstance(obj, Global):
            return _global(obj.module, obj.name)
        if isinstance(obj, Call):
            return _global(obj.module, obj.name) + self.value(tuple(obj.args)) + b"R"
        if isinstance(obj, np.ndarray):
            flat = np.ascontiguousarray(obj).reshape(-1)
            strides = tuple(int(np.prod(obj.shape[k + 1 :])) for k in range(obj.ndim))
            return self.value(Strided(flat, 0, tuple(obj.shape), strides))
        if isinstance(obj, Strided):
            return self.tensor(obj)
        raise TypeError(f"cannot write {type(obj).__name__}")

    def storage_id(self, t: Strided) -> bytes:
        name = t.storage_type or STORAGE_NAMES[t.storage.dtype]
        if t.view_of is None:
            root, view = t.storage, None
        else:
            root, start = t.view_of
            assert np.array_equal(root[start : start + t.storage.size], t.storage)
            view_key = self.views.setdefault(id(t.storage), f"{90_000 + len(self.views)}")
            view = (view_key, start, t.storage.size)
        fields = ("storage", Global("torch", name), self.key_of(root), "cpu", root.size)
        if self.layout == "legacy":
            fields = (*fields, view)
        return self.value(fields) + b"Q"  # BINPERSID

    def tensor(self, t: Strided) -> bytes:
        args = self.storage_id(t) + self.value((t.offset, tuple(t.shape), tuple(t.stride)))[1:-1]
        if self.tensor_style == "v1":
            return _global("torch._utils", "_rebuild_tensor") + b"(" + args + b"tR"
        hooks = self.value({})  # backward hooks: an empty OrderedDict
        head = _global("torch._utils", "_rebuild_tensor_v2")
        rebuilt = head + b"(" + args + b"\x89" + hooks + b"tR"  # requires_grad=False
        if self.tensor_style != "parameter":
            return rebuilt
        requires_grad = self.value(t.storage.dtype.kind in "fc")  # only float tensors may
        head = _global("torch._utils", "_rebuild_parameter")
        return head + b"(" + rebuilt + requires_grad + hooks + b"tR"

    def pickle(self, obj) -> bytes:
        return b"\x80\x02" + self.value(obj) + b"."


def _storage_bytes(array: np.ndarray, byteorder: str = "little") -> bytes:
    dtype = array.dtype.newbyteorder("<" if byteorder == "little" else ">")
    return np.ascontiguousarray(array, dtype=dtype).tobytes()


# --- the two layouts ---------------------------------------------------------------------------


def write_zip_checkpoint(
    path, state_dict, prefix: str = "archive", byteorder: str | None = "little", tensor_style="v2"
) -> Path:
    """``torch.save(state_dict, path)`` (zip layout, torch >= 1.6) without torch."""
    writer = _Writer("zip", tensor_style)
    data_pkl = writer.pickle(state_dict)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{prefix}/data.pkl", data_pkl)
        if byteorder is not None:
            zf.writestr(f"{prefix}/byteorder", byteorder)
        for key, root in writer.storages.values():
            zf.writestr(f"{prefix}/data/{key}", _storage_bytes(root, byteorder or "little"))
        zf.writestr(f"{prefix}/version", "3\n")
    return Path(path)


def write_legacy_checkpoint(path, state_dict, tensor_style="v1") -> Path:
    """``torch.save(..., _use_new_zipfile_serialization=False)`` (torch < 1.6) without torch."""
    writer = _Writer("legacy", tensor_style)
    body = writer.pickle(state_dict)
    sys_info = {"protocol_version": LEGACY_PROTOCOL_VERSION, "little_endian": True,
                "type_sizes": {"short": 2, "int": 4, "long": 8}}
    keys = sorted(key for key, _ in writer.storages.values())
    roots = {key: root for key, root in writer.storages.values()}
    with open(path, "wb") as f:
        for header in (MAGIC_NUMBER, LEGACY_PROTOCOL_VERSION, sys_info):
            f.write(pickle.dumps(header, protocol=2))
        f.write(body)
        f.write(pickle.dumps(keys, protocol=2))
        for key in keys:
            f.write(struct.pack("<q", roots[key].size))
            f.write(_storage_bytes(roots[key]))
    return Path(path)


def write_malicious_zip_checkpoint(path, marker: Path, how: str = "os.system") -> Path:
    """A zip checkpoint whose pickle, after an honest tensor, calls ``how`` to create ``marker``."""
    state = {"features.0.weight": np.ones((2, 3), np.float32), "x": marker_payload(marker, how)}
    return write_zip_checkpoint(path, state)


def write_malicious_legacy_checkpoint(path, marker: Path, how: str = "os.system") -> Path:
    """The legacy-format twin of :func:`write_malicious_zip_checkpoint`."""
    state = {"features.0.weight": np.ones((2, 3), np.float32), "x": marker_payload(marker, how)}
    return write_legacy_checkpoint(path, state)
