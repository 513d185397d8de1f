"""Read PyTorch checkpoints (``.pth``/``.pt``) without PyTorch, and without running their code.

A checkpoint is a pickle, and unpickling may call any function the file names, so a plain
``pickle.load`` of a downloaded file can run code. minist reads checkpoints with
:class:`_SafeUnpickler`, whose ``find_class`` hands out only minist's own replacement functions
for the handful of names a state dict needs (``collections.OrderedDict``, the ``torch._utils``
tensor rebuilders, the ``torch.*Storage`` type names). Any other name refuses the file.

Two layouts exist, both read here.

**Zip (torch >= 1.6).** A zip archive whose entries share one top folder ``<prefix>/`` (its
name varies: ``archive/``, the file stem, ...)::

    <prefix>/data.pkl       the object, storages as persistent ids
                            ('storage', StorageType, key, location, numel)
    <prefix>/data/<key>     each storage's raw bytes (numel * itemsize)
    <prefix>/byteorder      "little" or "big" (little when absent)

**Legacy (torch < 1.6, e.g. torchvision's 2017 ``vgg16-397923af.pth``).** Pickles one after
another, then raw data::

    pickle  MAGIC_NUMBER (0x1950a86a20f9469cfc6c)
    pickle  protocol version 1001
    pickle  sys_info dict
    pickle  the object; persistent ids ('storage', StorageType, root_key, location, numel,
            view_metadata), view_metadata None or (view_key, offset, view_numel) in elements
    pickle  list of the root storage keys, in the order their data follows
    for each key: int64 numel (little-endian), then numel * itemsize bytes (little-endian)

In both, a tensor is pickled as a call ``_rebuild_tensor(storage, offset, size, stride)``
(2017) or ``_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, meta])``:
element ``t[i_0, ..., i_{d-1}]`` is ``storage[offset + sum_k i_k stride_k]``. Because legacy
storages are filled only after the object pickle, the rebuilders return a
:class:`_TensorRef`, turned into an array (``as_strided`` view, then a contiguous copy) once all
data is in.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from minist.errors import MinistError

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

# torch storage type name -> little-endian NumPy dtype of its raw bytes.
STORAGE_DTYPES = {
    "DoubleStorage": "<f8",
    "FloatStorage": "<f4",
    "HalfStorage": "<f2",
    "BFloat16Storage": "<u2",  # the top 16 bits of a float32; widened on load
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
    "ComplexFloatStorage": "<c8",
    "ComplexDoubleStorage": "<c16",
}


class _BadFileError(Exception):
    """A defect of the file found while decoding; becomes ``MinistError("<path>: <message>")``."""


def _text(value) -> str:
    """Pickles written by Python 2 carry ``bytes`` where Python 3 writes ``str``."""
    return value.decode("ascii", "replace") if isinstance(value, bytes) else value


def _integer(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _BadFileError(f"{what} is {value!r}, expected a non-negative integer")
    return value


class StorageType(NamedTuple):
    """What the file's ``torch.FloatStorage`` (etc.) global becomes: a name and a dtype."""

    name: str
    dtype: np.dtype


class _Storage:
    """One flat storage: ``numel`` elements of ``dtype``; ``data`` is filled from the file."""

    __slots__ = ("type", "key", "numel", "data")

    def __init__(self, storage_type: StorageType, key: str, numel: int):
        self.type, self.key, self.numel, self.data = storage_type, key, numel, None

    def array(self) -> np.ndarray:
        if self.data is None:
            raise _BadFileError(f"storage {self.key!r} is used but its data is not in the file")
        return self.data


class _StorageView:
    """Legacy files only: elements ``[offset, offset + numel)`` of a root storage."""

    __slots__ = ("root", "key", "offset", "numel")

    def __init__(self, root: _Storage, key: str, offset: int, numel: int):
        self.root, self.key, self.offset, self.numel = root, key, offset, numel

    @property
    def type(self) -> StorageType:
        return self.root.type

    def array(self) -> np.ndarray:
        if self.offset + self.numel > self.root.numel:
            raise _BadFileError(f"storage view {self.key!r} reaches past the end of its storage")
        return self.root.array()[self.offset : self.offset + self.numel]


class _TensorRef(NamedTuple):
    """A tensor to build once storage data is read: ``storage[offset + sum_k i_k stride_k]``."""

    storage: object
    offset: int
    size: tuple
    stride: tuple


# --- minist's safe stand-ins for the functions a checkpoint names ------------------------------


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored) -> _TensorRef:
    """``torch._utils._rebuild_tensor`` (2017 files): record the view, check its arguments."""
    if not isinstance(storage, (_Storage, _StorageView)):
        raise _BadFileError("a tensor is built from something that is not a storage")
    if not isinstance(size, tuple) or not isinstance(stride, (tuple, list)):
        raise _BadFileError("a tensor's size or stride is not a tuple")
    if len(size) != len(stride):
        raise _BadFileError(f"a tensor has size {size} but stride {tuple(stride)}")
    offset = _integer(storage_offset, "a tensor's storage offset")
    size = tuple(_integer(n, "a tensor dimension") for n in size)
    stride = tuple(_integer(s, "a tensor stride") for s in stride)
    return _TensorRef(storage, offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *_requires_grad_hooks_metadata):
    """``torch._utils._rebuild_tensor_v2``: same view; requires_grad and hooks do not matter."""
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *_requires_grad_hooks_state):
    """``torch._utils._rebuild_parameter[_with_state]``: a Parameter is its tensor."""
    if not isinstance(data, _TensorRef):
        raise _BadFileError("a parameter wraps something that is not a tensor")
    return data


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
}
_STORAGE_MODULES = ("torch", "torch.cuda")  # a GPU-saved storage is "torch.cuda.FloatStorage"


class _SafeUnpickler(pickle.Unpickler):
    """An unpickler that can build only dicts, lists, numbers, strings and tensor references.

    ``storages(type, key, numel)`` returns the (memoised) storage for a persistent id.
    """

    def __init__(self, file, where: str, storages):
        super().__init__(file, encoding="utf-8")
        self.where = where
        self.storages = storages
        self.views: dict[str, _StorageView] = {}

    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[module, name]
        if module in _STORAGE_MODULES and isinstance(name, str) and name.endswith("Storage"):
            if name not in STORAGE_DTYPES:
                raise MinistError(f"{self.where}: unsupported tensor storage type {module}.{name}")
            return StorageType(name, np.dtype(STORAGE_DTYPES[name]))
        raise MinistError(
            f"{self.where}: refused to load: the pickle asks for {module}.{name}, "
            "which a weight file never needs (possibly malicious)"
        )

    def persistent_load(self, pid):
        # zip: ('storage', type, key, location, numel); legacy adds view_metadata.
        if not isinstance(pid, tuple) or len(pid) not in (5, 6) or _text(pid[0]) != "storage":
            kind = _text(pid[0]) if isinstance(pid, tuple) and pid else type(pid).__name__
            raise _BadFileError(f"unsupported persistent id {kind!r} (only storages are read)")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, StorageType):
            raise _BadFileError(f"storage {_text(key)!r} has no storage type")
        key = str(_text(key))
        root = self.storages(storage_type, key, _integer(numel, f"size of storage {key!r}"))
        view = pid[5] if len(pid) == 6 else None
        if view is None:
            return root
        if not (isinstance(view, tuple) and len(view) == 3):
            raise _BadFileError(f"storage {key!r} has malformed view metadata")
        view_key = str(_text(view[0]))
        if view_key not in self.views:
            offset = _integer(view[1], f"offset of storage view {view_key!r}")
            count = _integer(view[2], f"size of storage view {view_key!r}")
            self.views[view_key] = _StorageView(root, view_key, offset, count)
        return self.views[view_key]


# --- turning raw bytes and tensor references into arrays ---------------------------------------


def _decode_storage(raw: bytes, storage_type: StorageType, numel: int, key: str, big: bool):
    """Raw bytes -> native-endian flat array; bfloat16 becomes float32 (exactly)."""
    dtype = storage_type.dtype.newbyteorder(">") if big else storage_type.dtype
    if len(raw) != numel * dtype.itemsize:
        raise _BadFileError(
            f"storage {key!r} holds {len(raw)} bytes, expected {numel * dtype.itemsize} "
            f"({numel} x {storage_type.name})"
        )
    data = np.frombuffer(raw, dtype=dtype)
    if storage_type.name == "BFloat16Storage":
        # bfloat16 is the high half of a float32: widen u16 -> u32 and shift left by 16.
        return (data.astype(np.uint32) << 16).view(np.float32)
    return data.astype(dtype.newbyteorder("="), copy=False)


def _materialise(ref: _TensorRef, name: str) -> np.ndarray:
    """Gather ``storage[offset + sum_k i_k stride_k]`` into a new C-contiguous array."""
    data = ref.storage.array()
    if 0 not in ref.size:
        last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
        if last >= data.size:
            raise _BadFileError(
                f"tensor {name!r} (offset {ref.offset}, size {ref.size}, stride {ref.stride}) "
                f"reaches past the end of its storage of {data.size} elements"
            )
    elif ref.offset > data.size:
        raise _BadFileError(f"tensor {name!r} starts past the end of its storage")
    count = int(np.prod(ref.size, dtype=object))
    if count > 16 * data.size + 2**20:
        # Zero strides may repeat a few numbers endlessly; no weight tensor does that, and a
        # forged file must not make us allocate terabytes.
        raise _BadFileError(f"tensor {name!r} of size {ref.size} repeats its storage implausibly")
    strides = tuple(s * data.itemsize for s in ref.stride)
    view = np.lib.stride_tricks.as_strided(data[ref.offset :], ref.size, strides, writeable=False)
    return np.array(view, order="C", copy=True)


def _state_dict_of(obj) -> dict:
    """The state dict inside the unpickled object: itself, or a ``{"state_dict": ...}`` wrapper."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise _BadFileError(f"holds a {type(obj).__name__}, expected a state dict (name -> tensor)")
    out = {}
    for name, value in obj.items():
        name = _text(name)
        if not isinstance(value, _TensorRef):
            raise _BadFileError(f"entry {name!r} is a {type(value).__name__}, not a tensor")
        out[str(name)] = value
    return out


# --- the two file layouts ----------------------------------------------------------------------


def _zip_prefix(zf: zipfile.ZipFile) -> str:
    names = zf.namelist()
    pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise _BadFileError("is a zip archive but not a PyTorch checkpoint (no <folder>/data.pkl)")
    prefix = pickles[0][: -len("data.pkl")]
    if f"{prefix}constants.pkl" in names or any(n.startswith(f"{prefix}code/") for n in names):
        raise _BadFileError(
            "is a TorchScript archive (torch.jit.save), not a checkpoint; "
            "save model.state_dict() with torch.save instead"
        )
    return prefix


def _read_zip(zf: zipfile.ZipFile, where: str):
    prefix = _zip_prefix(zf)
    names = set(zf.namelist())
    order = "little"
    if f"{prefix}byteorder" in names:
        order = zf.read(f"{prefix}byteorder").decode("ascii", "replace").strip()
        if order not in ("little", "big"):
            raise _BadFileError(f"byteorder record says {order!r}, expected 'little' or 'big'")
    storages: dict[str, _Storage] = {}

    def storage_for(storage_type: StorageType, key: str, numel: int) -> _Storage:
        if key not in storages:
            record = f"{prefix}data/{key}"
            if record not in names:
                raise _BadFileError(f"storage record {record!r} is missing")
            storage = _Storage(storage_type, key, numel)
            nbytes = numel * storage_type.dtype.itemsize
            if zf.getinfo(record).file_size != nbytes:  # checked before inflating it
                size = zf.getinfo(record).file_size
                raise _BadFileError(f"storage {key!r} holds {size} bytes, expected {nbytes}")
            raw = zf.read(record)
            storage.data = _decode_storage(raw, storage_type, numel, key, big=order == "big")
            storages[key] = storage
        return _same_storage(storages[key], storage_type, numel)

    pickled = io.BytesIO(zf.read(f"{prefix}data.pkl"))
    return _SafeUnpickler(pickled, where, storage_for).load()


def _same_storage(storage: _Storage, storage_type: StorageType, numel: int) -> _Storage:
    if storage.type != storage_type or storage.numel != numel:
        raise _BadFileError(f"storage {storage.key!r} is declared twice, differently")
    return storage


def _read_legacy(f, where: str):
    def plain(what: str):
        # The header pickles hold only ints, strings, lists and dicts: an unpickler that
        # hands out no storages reads them.
        try:
            return _SafeUnpickler(f, where, _no_storages).load()
        except (MinistError, _BadFileError):
            raise
        except Exception as exc:
            raise _BadFileError(f"cannot read the {what} ({type(exc).__name__}: {exc})") from None

    try:
        magic = plain("magic number")
    except _BadFileError:
        magic = None
    if magic != MAGIC_NUMBER:
        raise _BadFileError(
            "not a PyTorch checkpoint (neither a zip archive nor a legacy torch.save file)"
        )
    version = plain("protocol version")
    if version != LEGACY_PROTOCOL_VERSION:
        raise _BadFileError(f"legacy format protocol version {version!r} is not supported")
    plain("sys_info")
    storages: dict[str, _Storage] = {}

    def storage_for(storage_type: StorageType, key: str, numel: int) -> _Storage:
        storages.setdefault(key, _Storage(storage_type, key, numel))
        return _same_storage(storages[key], storage_type, numel)

    obj = _SafeUnpickler(f, where, storage_for).load()
    keys = plain("storage keys")
    if not isinstance(keys, list):
        raise _BadFileError("the list of storage keys is missing")
    for key in keys:
        key = str(_text(key))
        if key not in storages:
            raise _BadFileError(f"data for storage {key!r}, which no tensor uses")
        storage = storages[key]
        header = f.read(8)
        if len(header) != 8:
            raise _BadFileError(f"truncated: the data of storage {key!r} is missing")
        (count,) = struct.unpack("<q", header)
        if count != storage.numel:
            raise _BadFileError(f"storage {key!r} holds {count} elements, expected {storage.numel}")
        nbytes = count * storage.type.dtype.itemsize
        left = os.fstat(f.fileno()).st_size - f.tell()
        if nbytes > left:  # checked before reading: a forged count must not allocate memory
            raise _BadFileError(f"truncated: storage {key!r} needs {nbytes} bytes, {left} left")
        raw = f.read(nbytes)
        if len(raw) != nbytes:
            raise _BadFileError(f"truncated: storage {key!r} needs {nbytes} bytes, {len(raw)} left")
        storage.data = _decode_storage(raw, storage.type, count, key, big=False)
    return obj


def _no_storages(*_args):
    raise _BadFileError("unexpected tensor storage in a header pickle")


def read_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a PyTorch state dict (zip or legacy format) as ``{name: contiguous ndarray}``.

    Keys are kept as in the file (``features.0.weight`` ...), in file order; dtypes are kept
    (bfloat16 becomes float32). A checkpoint ``{"state_dict": {...}, ...}`` gives its inner dict.
    Any problem -- a missing, foreign, truncated or malicious file -- raises a one-line
    :class:`MinistError` naming ``path``.
    """
    where = str(path)
    p = Path(path)
    if not p.exists():
        raise MinistError(f"{where}: no such file")
    if p.is_dir():
        raise MinistError(f"{where}: is a directory, expected a PyTorch checkpoint file")
    try:
        with open(p, "rb") as f:
            head = f.read(4)
            f.seek(0)
            if zipfile.is_zipfile(f):
                f.seek(0)
                with zipfile.ZipFile(f) as zf:
                    obj = _read_zip(zf, where)
            elif head.startswith(b"PK"):
                raise _BadFileError(
                    "looks like a zip archive but cannot be opened (truncated or corrupt)"
                )
            else:
                f.seek(0)
                obj = _read_legacy(f, where)
        refs = _state_dict_of(obj)
        return {name: _materialise(ref, name) for name, ref in refs.items()}
    except MinistError:
        raise
    except _BadFileError as exc:
        raise MinistError(f"{where}: {exc}") from None
    except OSError as exc:
        raise MinistError(f"{where}: cannot be read ({exc.strerror or exc})") from None
    except Exception as exc:  # anything a damaged pickle or zip can raise while decoding
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise MinistError(f"{where}: corrupt or truncated PyTorch checkpoint ({detail})") from None
