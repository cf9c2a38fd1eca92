"""Writing files so that a file that exists is whole: every file that marks work as finished (job
records, the plan, datasets, tables, plots) is written under a hidden temporary name, flushed to
disk and renamed into place (`atomic`). A write that fails leaves no temporary file, and a full
disk is reported as such (`DiskFull`), whichever library was writing (json, numpy, h5py, torch)."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import shutil
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


def tmp_path(path: Path) -> Path:
    """Where `path` is written before it is renamed into place (hidden, per process)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def existing_ancestor(path: Path) -> Path:
    """`path` itself if it exists, else its nearest existing parent."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: Path) -> int:
    """Free bytes on the device that holds `path` (or its nearest existing folder)."""
    return shutil.disk_usage(existing_ancestor(path)).free


def _mb(n: float) -> str:
    return f"{n / 2**20:,.1f} MB" if n >= 2**20 else f"{n / 1024:,.0f} KB"


class DiskFull(OSError):
    """The device filled up while `path` was written (nothing of it was kept)."""

    def __init__(self, path: Path, need: int | None = None):
        self.path = Path(path)
        free = free_bytes(self.path)
        needs = f"; writing it needs up to {_mb(need)} more" if need and need > free else ""
        super().__init__(
            errno.ENOSPC,
            f"no space left on the device of {self.path} ({_mb(free)} free{needs}); "
            "free some space and run the same command again: finished work is kept",
        )

    def __str__(self) -> str:
        return self.strerror


def is_disk_full(e: BaseException, path: Path) -> bool:
    """Whether a failed write failed for space. Libraries say so differently (h5py and torch's zip
    writer often without errno), so an error while the device has under 1 MB left counts too."""
    cause: BaseException | None = e
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left" in str(cause):
            return True
        cause = cause.__cause__ or cause.__context__
    try:
        return free_bytes(path) < 2**20
    except OSError:
        return False


@contextlib.contextmanager
def atomic(path: Path, need: int | None = None) -> Iterator[Path]:
    """Yields a temporary path to write `path` through; on success it is synced and renamed into
    place, on failure removed (an earlier `path` stays as it was). `need`: the bytes the write
    needs, if known, for the message of a full disk."""
    path = Path(path)
    tmp = tmp_path(path)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except DiskFull:
        raise
    except Exception as e:
        if is_disk_full(e, path):
            raise DiskFull(path, need) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_temporaries(folder: Path) -> int:
    """Delete temporary files that a killed writer left in `folder` and its sub-folders (the
    caller knows no writer is running there). Returns how many were removed."""
    n = 0
    for pattern in (".*.tmp[0-9]*", "*/.*.tmp[0-9]*"):
        for f in Path(folder).glob(pattern):
            f.unlink(missing_ok=True)
            n += 1
    return n


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=_json_default)


def json_text(obj: Any) -> str:
    """JSON with one line per top-level key, and per item of a top-level list or object of
    objects (a job's stimuli, the stimulus index): readable, and each line by json's C encoder
    (json.dumps with indent= is pure Python: ~10x slower on a job's records)."""
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) for k in obj):
        return _dumps(obj)
    lines = []
    for k, v in obj.items():
        if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            v = "[\n  " + ",\n  ".join(_dumps(x) for x in v) + "\n ]"
        elif (isinstance(v, dict) and v and all(isinstance(x, dict) for x in v.values())
              and all(isinstance(i, str) for i in v)):
            v = "{\n  " + ",\n  ".join(f"{_dumps(i)}: {_dumps(x)}" for i, x in v.items()) + "\n }"
        else:
            v = _dumps(v)
        lines.append(f" {_dumps(k)}: {v}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def write_json(path: Path, obj: Any) -> None:
    text = json_text(obj)
    with atomic(path, need=len(text)) as tmp:
        tmp.write_text(text)


def write_npz(path: Path, arrays: dict[str, np.ndarray], level: int = 1, min_bytes: int = 0) -> None:
    """An .npz file (numpy.load reads it), its arrays of at least `min_bytes` deflated at zlib
    `level` (0: all stored)."""
    arrays = {k: np.asarray(a) for k, a in arrays.items()}
    arrays = {k: a if a.flags.c_contiguous else a.copy(order="C") for k, a in arrays.items()}
    need = sum(a.nbytes for a in arrays.values())
    with atomic(path, need=need) as tmp, open(tmp, "wb") as f:
        if not _write_zip(f, arrays, level, min_bytes):
            (np.savez_compressed if level else np.savez)(f, **arrays)


# The zip writer of write_npz: numpy's savez costs ~100 us per array (zipfile, a temporary file
# per member, the npy header through ast); a job writes a dozen arrays per stimulus. This writes
# the same format (npy members in a plain zip) in one pass, with a fixed date so that the same
# arrays give the same bytes. Past the limits of a plain zip (65,535 members, 4 GiB), or for
# arrays that numpy alone can write (objects), np.savez does it.
_ZIP_LIMIT = 2**32 - 2**20
_DOS_DATE = (0 << 9) | (1 << 5) | 1  # 1980-01-01
_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_END = struct.Struct("<IHHHHIIH")
_LOCAL_SIZES = struct.Struct("<I22xHH")  # a local header's signature, name and extra lengths


def npy_header(a: np.ndarray) -> bytes:
    """The .npy (version 1.0) header of a C-contiguous array, as numpy writes it."""
    descr = np.lib.format.dtype_to_descr(a.dtype)
    text = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {a.shape!r}, }}"
    text += " " * (-(11 + len(text)) % 64) + "\n"  # numpy aligns the data to 64 bytes
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")


def _write_zip(f, arrays: dict[str, np.ndarray], level: int, min_bytes: int = 0) -> bool:
    if (len(arrays) >= 0xFFFF or sum(a.nbytes for a in arrays.values()) > _ZIP_LIMIT
            or any(a.dtype.hasobject for a in arrays.values())):
        return False
    central, offset = [], 0
    for key, a in arrays.items():
        name = f"{key}.npy".encode()
        flags = 0 if name.isascii() else 0x800  # utf-8 names
        head, data = npy_header(a), a.reshape(-1).view(np.uint8).data if a.size else b""
        size = len(head) + a.nbytes
        crc = zlib.crc32(data, zlib.crc32(head))
        method = 8 if level and a.nbytes >= min_bytes else 0
        if method:
            z = zlib.compressobj(level, zlib.DEFLATED, -15)
            body = [z.compress(head), z.compress(data), z.flush()]
        else:
            body = [head, data]
        csize = sum(len(b) for b in body)
        f.write(_LOCAL.pack(0x04034B50, 20, flags, method, 0, _DOS_DATE, crc, csize, size,
                            len(name), 0) + name)
        for b in body:
            f.write(b)
        central.append(_CENTRAL.pack(0x02014B50, 20, 20, flags, method, 0, _DOS_DATE, crc, csize,
                                     size, len(name), 0, 0, 0, 0, 0, offset) + name)
        offset += _LOCAL.size + len(name) + csize
    cd = b"".join(central)
    f.write(cd + _END.pack(0x06054B50, 0, 0, len(arrays), len(arrays), len(cd), offset, 0))
    return True


# -- reading them back -----------------------------------------------------------------------------


class NpzError(Exception):
    """An npz file that cannot be read as it was written; the message says why."""


_MMAP_FROM = 64 * 2**20  # larger files (intermediates) are mapped, not read
_NPY_HEADER = re.compile(r"\{'descr': '([^']+)', 'fortran_order': (False|True), 'shape': \(([0-9, ]*)\), \}\s*")
_HEADERS: dict[bytes, tuple] = {}  # an npy header -> (dtype, shape, size, order)


class Npz:
    """An npz file indexed from its bytes in one read: `files`, `view(name)` (a read-only array on
    the bytes read), `[name]` (a copy), `check()` (every member's CRC). numpy.load costs ~150 us per
    member (zipfile objects, the header parsed by ast) and testzip reads each member again; this
    reads the file once and its central directory with struct. Zip64 files and anything unusual
    are indexed by zipfile instead. Raises NpzError for a missing, empty, truncated or corrupt file
    or member (never an error of the zip or zlib modules)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size >= _MMAP_FROM:
                    import mmap

                    self._data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
                else:
                    self._data = f.read()
        except FileNotFoundError:
            raise NpzError("missing (deleted?)") from None
        except OSError as e:
            raise NpzError(f"cannot read it ({e.strerror or e})") from None
        if not size:
            raise NpzError("empty file")
        self._buf = memoryview(self._data)
        try:
            self._members = self._index() if self._plain() else self._index_zipfile()
        except NpzError:
            raise
        except Exception:  # noqa: BLE001 - struct, zipfile, slicing: a damaged directory, said as such
            raise NpzError("not a zip file (truncated?)") from None
        self.files = list(self._members)

    def _plain(self) -> bool:
        """Whether the file ends with a plain end-of-directory record (no comment, no zip64)."""
        end = self._buf[-_END.size:]
        if len(end) < _END.size or bytes(end[:4]) != b"PK\x05\x06":
            return False
        _, _, _, _, n, _, offset, _ = _END.unpack(end)
        return n != 0xFFFF and offset != 0xFFFFFFFF

    def _member(self, name: str, flags: int, method: int, crc: int, csize: int, usize: int, offset: int):
        data = self._data
        if flags & 1 or method not in (0, 8):
            raise NpzError(f"member {name} is encrypted or compressed with an unknown method")
        sig, nlen, elen = _LOCAL_SIZES.unpack_from(data, offset)
        if sig != 0x04034B50:
            raise NpzError(f"corrupt (member {name}: no local header where the directory says)")
        start = offset + _LOCAL.size + nlen + elen
        if start + csize > len(data):
            raise NpzError("not a zip file (truncated?)")
        return method, crc, start, csize, usize

    def _index(self) -> dict:
        data = self._data  # bytes or a mapping: struct and slices read them without copies
        _, _, _, _, n, cd_size, pos, _ = _END.unpack(data[-_END.size:])
        out = {}
        for _ in range(n):
            (sig, _, _, flags, method, _, _, crc, csize, usize, nlen, elen, clen, _, _, _,
             offset) = _CENTRAL.unpack_from(data, pos)
            if sig != 0x02014B50:
                raise NpzError("not a zip file (truncated?)")
            raw = data[pos + _CENTRAL.size : pos + _CENTRAL.size + nlen]
            try:
                name = raw.decode("ascii")  # the names a job writes: the fast codec
            except UnicodeDecodeError:
                name = raw.decode("utf-8" if flags & 0x800 else "cp437")
            if 0xFFFFFFFF in (csize, usize, offset):  # zip64 sizes: zipfile knows them
                return self._index_zipfile()
            if name.endswith(".npy"):
                out[name[:-4]] = self._member(name, flags, method, crc, csize, usize, offset)
            pos += _CENTRAL.size + nlen + elen + clen
        return out

    def _index_zipfile(self) -> dict:
        import io
        import zipfile

        try:
            with zipfile.ZipFile(io.BytesIO(self._buf)) as zf:
                infos = zf.infolist()
        except zipfile.BadZipFile:
            raise NpzError("not a zip file (truncated?)") from None
        return {i.filename[:-4]: self._member(i.filename, i.flag_bits, i.compress_type, i.CRC, i.compress_size,
                                              i.file_size, i.header_offset)
                for i in infos if i.filename.endswith(".npy")}

    def _bytes(self, name: str):
        """The member's bytes, CRC-checked."""
        method, crc, start, csize, usize = self._members[name]
        raw = self._buf[start : start + csize]
        if method == 8:
            try:
                raw = zlib.decompress(raw, -15, usize or 1)
            except zlib.error as e:
                raise NpzError(f"corrupt (zlib.error: {e})") from None
        if len(raw) != usize or zlib.crc32(raw) != crc:
            raise NpzError(f"member {name}.npy fails its CRC check (corrupt)")
        return raw

    def check(self) -> None:
        for name in self._members:
            self._bytes(name)

    def __contains__(self, name: str) -> bool:
        return name in self._members

    def view(self, name: str) -> np.ndarray:
        """The array `name`, read-only (KeyError if there is none)."""
        raw = self._bytes(name)
        try:
            return _npy_array(raw)
        except Exception as e:  # noqa: BLE001 - intact member, but not an array numpy wrote
            raise NpzError(f"member {name}.npy is not a readable array ({type(e).__name__}: {e})") from None

    def __getitem__(self, name: str) -> np.ndarray:
        return self.view(name).copy()

    def close(self) -> None:
        # arrays handed out may still view the bytes: they keep them (and a mapping) alive
        self._buf = self._data = None
        self._members = {}


def _npy_array(raw) -> np.ndarray:
    """The array of a .npy file's bytes (a view on them)."""
    if bytes(raw[:6]) != b"\x93NUMPY":
        raise ValueError("no .npy magic")
    if raw[6] == 1:
        (hlen,), at = struct.unpack_from("<H", raw, 8), 10
    else:
        (hlen,), at = struct.unpack_from("<I", raw, 8), 12
    text = bytes(raw[at : at + hlen])
    parsed = _HEADERS.get(text)
    if parsed is None:
        m = _NPY_HEADER.fullmatch(text.decode("latin1"))
        if m is None:  # written by another numpy: its own parser
            import io

            return np.lib.format.read_array(io.BytesIO(bytes(raw)), allow_pickle=False)
        shape = tuple(int(s) for s in m[3].split(",") if s.strip())
        parsed = (np.dtype(m[1]), shape, math.prod(shape), "F" if m[2] == "True" else "C")
        if len(_HEADERS) < 4096:  # the series of a sweep share a handful of headers
            _HEADERS[text] = parsed
    dtype, shape, count, order = parsed
    return np.frombuffer(raw, dtype, count=count, offset=at + hlen).reshape(shape, order=order)
