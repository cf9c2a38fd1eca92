"""results.h5: the dataset in HDF5, written stimulus by stimulus as the aggregation reads the job
folders (peak memory: one job's spike indices).

Layouts (`layout`):
  groups (the default, the documented one)  stimuli/stim_NNNN (attributes: every parameter),
          responses/stim_NNNN/{pop}_spikes [T, N] bool, gzip (deflate) chunks of <= 1 MiB,
          intermediates beside the spikes
  ragged  no per-stimulus groups: spikes/{pop}/index (the flat spike indices t * N + n of every
          stimulus, one after the other), spikes/{pop}/offsets [S + 1] (stimulus i's indices are
          index[offsets[i]:offsets[i + 1]]), spikes/{pop}/afferents [S] (its N) and spikes/steps
          [S] (its T); intermediates in intermediates/stim_NNNN
Both have metadata, grid and stimuli_table: one compound dataset, a row per stimulus (in the order
of spikes/ and of sorted stimulus ids) and a column per parameter (stimulus_id first; a
parameter that a stimulus lacks is NaN in a number column, "" in a text column).

Why it is written this way (by measurement, 1,000 default stimuli of T x N = 4000 x 357): h5py's
high-level calls cost 0.1-0.5 ms each here (an attribute ~0.25 ms, a dataset ~0.5 ms), so objects
are made with the low-level API; and compressing a [T, N] raster with zlib costs ~5 ms although
it is ~0.02% ones. A raster chunk's deflate stream is therefore built from the spike indices
(`deflate_chunks`: runs of zeros as length-258 matches, one fixed Huffman code), written with
H5Dwrite_chunk; a chunk without spikes is not written at all (HDF5 reads it as its fill value,
False). Any HDF5 reader decompresses them with the standard gzip filter.
"""

from __future__ import annotations

import json
import math
import sys
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from sensoryforge.core.schema import POPULATIONS
from sensoryforge.dataset.collection import Item, flat_params
from sensoryforge.dataset.files import atomic
from sensoryforge.dataset.intermediates import documented
from sensoryforge.dataset.jobs import NpzReader

LAYOUTS = ("groups", "ragged")
# units of the arrays in responses/stim_NNNN (HDF5 attribute `unit`)
UNITS = {"spikes": "bool", "drive": "rheobase units", "voltage": "mV (model units)",
         "stimulus_spatial": "kPa", "stimulus_temporal": "1 (dimensionless)", "stimulus_times": "ms",
         "stimulus": "kPa"}
CHUNK_BYTES = 2**20  # a raster chunk: whole rows, at most this many bytes
DEFLATE_SPIKES = 2**16  # spikes per call of deflate_chunks (its temporaries: ~500 bytes per spike)
ATTRS_COMPACT = 64  # attributes a group keeps in its object header (_LowLevel)


def _attr(v):
    if v is None:
        return "null"
    if isinstance(v, (list, dict, tuple)):
        return json.dumps(v)
    return v


def _unit(name: str) -> str:
    for k, u in UNITS.items():
        if name.endswith(k):
            return u
    return ""


# -- deflate streams of sparse bool chunks --------------------------------------------------------
# One dynamic-Huffman block per chunk, the same code for all: literal/length code lengths 1 for
# symbol 285 (a match of 258 bytes), 2 for literal 0, 3 for literal 1, 7 and 8 for the other length
# symbols (a complete code); one distance code (distance 1: the previous byte, always a 0 here).
# A run of z zeros is literal 0, then (z - 1) // 258 matches of 258 (2 bits each, both codes being
# all zeros), then the rest as one shorter match or one or two literal zeros; each one a literal 1.

def _canonical(lengths: np.ndarray) -> np.ndarray:
    """RFC 1951 canonical Huffman codes of `lengths`, bit-reversed for LSB-first packing."""
    codes, code = np.zeros(len(lengths), np.int64), 0
    for n in range(1, int(lengths.max()) + 1):
        for s in np.flatnonzero(lengths == n):
            codes[s] = int(f"{code:0{n}b}"[::-1], 2)
            code += 1
        code <<= 1
    return codes


def _tables():
    lengths = np.zeros(286, np.int64)
    lengths[[285, 0, 1]] = [1, 2, 3]
    lengths[256:259] = 7
    lengths[259:285] = 8
    codes = _canonical(lengths)
    base = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
            163, 195, 227, 258]
    extra = [0] * 8 + [1] * 4 + [2] * 4 + [3] * 4 + [4] * 4 + [5] * 4 + [0]
    match_value, match_bits = np.zeros(259, np.int64), np.zeros(259, np.int64)  # length -> token
    for i, (b, e) in enumerate(zip(base, extra)):
        top = 258 if i == 28 else min(base[i + 1] - 1, 257)
        for n in range(b, top + 1):  # the length code, its extra bits, distance code "0"
            match_value[n] = codes[257 + i] | ((n - b) << lengths[257 + i])
            match_bits[n] = lengths[257 + i] + e + 1
    # the zlib header (78 01), BFINAL + dynamic, HLIT 286, HDIST 1, then the code lengths, coded
    # with a code-length code (zero runs as symbol 18)
    bits = [(0x0178, 16), (1, 1), (2, 2), (29, 5), (0, 5)]
    seq, syms, i = [int(x) for x in lengths] + [1], [], 0
    while i < len(seq):
        j = i
        while j < len(seq) and seq[j] == 0 and j - i < 138:
            j += 1
        if j - i >= 11:
            syms.append((18, j - i - 11, 7))
            i = j
        else:
            syms.append((seq[i], 0, 0))
            i += 1
    order = sorted({s for s, _, _ in syms}, key=lambda s: -sum(x == s for x, _, _ in syms))
    cl = np.zeros(19, np.int64)
    for r, s in enumerate(order):  # lengths 1, 2, ..., n - 1, n - 1: complete
        cl[s] = min(r + 1, len(order) - 1)
    cl_codes = _canonical(cl)
    perm = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]
    hclen = max(i for i, s in enumerate(perm) if cl[s]) + 1
    bits += [(hclen - 4, 4)] + [(int(cl[s]), 3) for s in perm[:hclen]]
    for s, e, n in syms:
        bits.append((int(cl_codes[s]), int(cl[s])))
        if n:
            bits.append((e, n))
    flat = [(v >> k) & 1 for v, n in bits for k in range(n)]
    header = [(sum(b << k for k, b in enumerate(flat[o:o + 16])), len(flat[o:o + 16]))
              for o in range(0, len(flat), 16)]
    lit = {s: (int(codes[s]), int(lengths[s])) for s in (0, 1, 256)}
    return header, len(flat), match_value, match_bits, lit


_HEADER, _HEADER_BITS, _MATCH_VALUE, _MATCH_BITS, _LIT = _tables()
_W = 4  # tokens per row: a gap's literal 0, its runs of 258, its rest, the literal 1 after it
_HEADER_ROWS = -(-len(_HEADER) // _W)


def deflate_chunks(sizes: np.ndarray, positions: np.ndarray, starts: np.ndarray) -> list[bytes]:
    """The zlib streams of bool chunks: chunk c has sizes[c] bytes, ones at the sorted positions
    positions[starts[c]:starts[c + 1]] (relative to the chunk), zeros elsewhere. Vectorised over
    all chunks: a row of tokens (value, bits) per run of zeros, packed with one cumulative sum."""
    sizes, starts = np.asarray(sizes, np.int64), np.asarray(starts, np.int64)
    pos = np.append(np.asarray(positions, np.int64), 0)
    nc, k = sizes.size, np.diff(starts)
    if nc == 0:
        return []
    ng = k + 1  # runs of zeros per chunk (some empty)
    gstart = np.zeros(nc + 1, np.int64)
    np.cumsum(ng, out=gstart[1:])
    chunk = np.repeat(np.arange(nc), ng)
    j = np.arange(gstart[-1]) - gstart[chunk]
    last = j == k[chunk]
    after = np.minimum(starts[chunk] + j, pos.size - 1)  # the one after the run, if any
    z = np.where(last, sizes[chunk], pos[after]) - np.where(j == 0, -1, pos[np.maximum(after - 1, 0)]) - 1
    runs, rest = np.divmod(np.maximum(z - 1, 0), 258)
    match = rest >= 3
    lit0, lit1, eob = _LIT[0], _LIT[1], _LIT[256]
    rows = gstart[-1] + (_HEADER_ROWS + 1) * nc
    v, b = np.zeros((rows, _W), np.int64), np.zeros((rows, _W), np.int64)
    g = np.arange(gstart[-1]) + (_HEADER_ROWS + 1) * chunk + _HEADER_ROWS
    b[g, 0], v[g, 0] = np.where(z > 0, lit0[1], 0), np.where(z > 0, lit0[0], 0)
    b[g, 1] = 2 * runs  # value 0: no bits to set
    m = np.where(match, rest, 3)
    b[g, 2] = np.where(match, _MATCH_BITS[m], lit0[1] * rest)
    v[g, 2] = np.where(match, _MATCH_VALUE[m], np.where(rest == 2, lit0[0] | (lit0[0] << lit0[1]),
                                                          np.where(rest == 1, lit0[0], 0)))
    b[g, 3], v[g, 3] = np.where(last, 0, lit1[1]), np.where(last, 0, lit1[0])
    head = gstart[:-1] + (_HEADER_ROWS + 1) * np.arange(nc)
    for c, (hv, hb) in enumerate(_HEADER):
        v[head + c // _W, c % _W], b[head + c // _W, c % _W] = hv, hb
    tail = head + _HEADER_ROWS + ng
    body = _HEADER_BITS + np.add.reduceat(b[g].sum(1), gstart[:-1]) + eob[1]
    sums = np.where(k > 0, np.add.reduceat(pos, np.minimum(starts[:-1], pos.size - 1)), 0)
    adler = (((sizes * (1 + k) - sums) % 65521) << 16) | ((1 + k) % 65521)  # of the 0/1 bytes
    v[tail, 0], b[tail, 0] = eob
    b[tail, 1] = -body % 8  # to a byte boundary
    v[tail, 2], b[tail, 2] = ((adler >> 24) & 0xFF) | (((adler >> 16) & 0xFF) << 8), 16  # big-endian
    v[tail, 3], b[tail, 3] = ((adler >> 8) & 0xFF) | ((adler & 0xFF) << 8), 16
    b, v = b.ravel(), v.ravel()
    at = np.cumsum(b) - b
    n_bytes = int(at[-1] + b[-1]) // 8
    set_ = v != 0
    at, v = at[set_], v[set_]
    byte, shifted = at >> 3, v << (at & 7)  # <= 23 bits: three bytes, bits never overlap
    out = np.bincount(byte, shifted & 0xFF, n_bytes + 2)
    out += np.bincount(byte + 1, (shifted >> 8) & 0xFF, n_bytes + 2)
    out += np.bincount(byte + 2, (shifted >> 16) & 0xFF, n_bytes + 2)
    raw = out[:n_bytes].astype(np.uint8).tobytes()
    ends = np.cumsum((body + b.reshape(rows, _W)[tail, 1] + 32) // 8).tolist()
    return [raw[a:e] for a, e in zip([0, *ends[:-1]], ends)]


def raster_chunks(flat: np.ndarray, steps: int, n: int) -> tuple[int, list[tuple[int, np.ndarray]]]:
    """(rows per chunk, [(first row, positions in the chunk)] of the chunks with spikes)."""
    rows = max(1, min(steps, CHUNK_BYTES // max(n, 1)))
    size = rows * n
    which = flat // size
    cuts = np.flatnonzero(np.diff(which)) + 1
    parts = np.split(flat, cuts) if flat.size else []
    return rows, [(int(p[0] // size) * rows, p % size) for p in parts]


# -- the writer -----------------------------------------------------------------------------------


class _LowLevel:
    """h5py's low-level calls for many small objects, with the types made once: the same
    datatypes h5py's `attrs[k] = v` gives (int64, float64, bool enum, UTF-8 variable-length
    string), at a third of its cost."""

    def __init__(self):
        import h5py

        self.h5py = h5py
        self.scalar = h5py.h5s.create(h5py.h5s.SCALAR)
        self.types = {
            int: (h5py.h5t.STD_I64LE, h5py.h5t.NATIVE_INT64, np.dtype(np.int64)),
            float: (h5py.h5t.IEEE_F64LE, h5py.h5t.NATIVE_DOUBLE, np.dtype(np.float64)),
            bool: (h5py.h5t.py_create(np.dtype(bool)),) * 2 + (np.dtype(bool),),
            # a str: written from numpy's object pointers (h5py converts them), as h5py does
            str: (h5py.h5t.py_create(h5py.string_dtype(), logical=True), h5py.h5t.py_create(h5py.string_dtype()),
                  h5py.string_dtype()),
        }
        self.bool_type = self.types[bool][0]
        self.gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
        self.gcpl.set_obj_track_times(False)  # same bytes for the same dataset
        # a stimulus' ~25 attributes stay in its group's header: past HDF5's default of 8 they
        # would move to a fractal heap and B-tree (20% slower to write, 2.2x the bytes)
        self.gcpl.set_attr_phase_change(ATTRS_COMPACT, ATTRS_COMPACT * 3 // 4)
        self.dcpl: dict[tuple[int, int], object] = {}

    def group(self, parent, name: str):
        return self.h5py.h5g.create(parent, name.encode(), gcpl=self.gcpl)

    def attrs(self, gid, values: dict) -> None:
        h5a = self.h5py.h5a
        for k, v in values.items():
            v = _attr(v)
            t = self.types.get(type(v))
            if t is None or not k.isascii() or (t[2].kind == "i" and not -2**63 <= v < 2**63):
                self.h5py.AttributeManager(self.h5py.Group(gid))[k] = v  # anything else: h5py's way
                continue
            h5a.create(gid, k.encode(), t[0], self.scalar).write(np.array(v, t[2]), mtype=t[1])

    def raster(self, gid, name: str, steps: int, n: int, rows: int, chunks: list[tuple[int, bytes]]) -> None:
        """A [steps, n] bool dataset of deflate chunks (rows x n) of which `chunks` are written."""
        h5py = self.h5py
        space = h5py.h5s.create_simple((steps, n))
        if steps * n == 0:  # nothing to chunk: an empty contiguous dataset, as h5py makes it
            h5py.h5d.create(gid, name.encode(), self.bool_type, space)
            return
        dcpl = self.dcpl.get((rows, n))
        if dcpl is None:
            dcpl = self.dcpl[(rows, n)] = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_chunk((rows, n))
            dcpl.set_deflate(4)
            dcpl.set_obj_track_times(False)
        ds = h5py.h5d.create(gid, name.encode(), self.bool_type, space, dcpl=dcpl)
        for row, data in chunks:
            ds.write_direct_chunk((row, 0), data)


_MISSING = object()


def _column(values: list) -> tuple[np.dtype, list, bool]:
    """A stimuli_table column of the attribute values (hdf5's `_attr` of each; _MISSING where a
    stimulus lacks it): (dtype, values, whether they are JSON). Numbers: int64, or float64 with
    NaN where missing; booleans (none missing): bool; strings: text, "" where missing; a mix:
    each value's JSON text ("" where missing), so that numbers and strings stay what they were."""
    import h5py

    present = [v for v in values if v is not _MISSING]
    full = len(present) == len(values)
    kinds = {bool if type(v) is bool else (int, float) if type(v) in (int, float) else type(v) for v in present}
    if kinds == {bool} and full:
        return np.dtype(bool), values, False
    if kinds == {(int, float)}:
        if full and all(type(v) is int and -2**63 <= v < 2**63 for v in present):
            return np.dtype(np.int64), values, False
        return np.dtype(np.float64), [math.nan if v is _MISSING else v for v in values], False
    if kinds <= {str}:
        return h5py.string_dtype(), ["" if v is _MISSING else v for v in values], False
    return h5py.string_dtype(), ["" if v is _MISSING else json.dumps(v) for v in values], True


def stimuli_table(rows: list[dict]) -> tuple[np.ndarray, list[str]]:
    """stimuli_table's structured array (a row per dict, a column per key, by first appearance)
    and the names of its JSON columns."""
    keys = list(dict.fromkeys(k for r in rows for k in r)) or ["stimulus_id"]  # no stimuli: no rows
    cols = {k: _column([_attr(r[k]) if k in r else _MISSING for r in rows]) for k in keys}
    table = np.empty(len(rows), dtype=[(k, dt) for k, (dt, _, _) in cols.items()])
    for k, (_, values, _) in cols.items():
        table[k] = values
    return table, [k for k, (_, _, js) in cols.items() if js]


def read_stimuli_table(ds) -> list[dict]:
    """The rows of a stimuli_table dataset as dicts of the values the attributes hold (bytes as
    str; what a stimulus lacks left out)."""
    table = ds[()]
    js = set(json.loads(ds.attrs.get("json_columns", "[]")))
    out = []
    for row in table.tolist():
        d = {}
        for k, v in zip(table.dtype.names, row):
            if isinstance(v, bytes):
                v = v.decode()
                if v == "":
                    continue
                if k in js:
                    v = json.loads(v)
            elif isinstance(v, float) and math.isnan(v):
                continue
            d[k] = v
        out.append(d)
    return out


class H5Writer:
    """results.h5, fed job by job (`add`), written atomically when closed (a context manager)."""

    part = "hdf5"  # its name in batch_metadata's aggregation_timing_s

    def __init__(self, path: Path, items: list[Item], swept: list[str], meta: dict, intermediates: bool,
                 layout: str = "groups"):
        import h5py

        self.swept, self.intermediates, self.layout = swept, intermediates, layout
        self._stack = ExitStack()
        try:
            tmp = self._stack.enter_context(atomic(path))
            # HDF5 >= 1.10 file format: compact groups and attributes, 2-4x smaller than the 1.8
            # one for many small per-stimulus datasets (readable with HDF5 1.10 or newer)
            self.f = self._stack.enter_context(h5py.File(tmp, "w", libver=("v110", "latest")))
            self._start(items, meta)
        except BaseException:
            self._stack.__exit__(*sys.exc_info())  # no temporary file left
            raise

    def _start(self, items: list[Item], meta: dict) -> None:
        layout = self.layout
        self.ll = _LowLevel()
        m = self.f.create_group("metadata")
        for k in ("batch_id", "num_stimuli", "num_failed", "format", "created"):
            m.attrs[k] = meta[k]
        for k in ("config", "failed_stimuli", "swept", "counts", "populations"):
            m.attrs[k] = json.dumps(meta[k])
        m.attrs["dt"] = meta["dt"] if meta["dt"] is not None else np.nan
        m.attrs["steps"] = meta["steps"] if meta["steps"] is not None else -1
        m.attrs["layout"] = layout
        g = self.f.create_group("grid")
        g.attrs["size"] = meta["grid"].get("size", -1)
        g.attrs["spacing"] = meta["grid"].get("spacing", np.nan)
        g.attrs["unit"] = "mm"
        self.rows: list[dict] = []
        if layout == "groups":
            self.stim_g, self.resp_g = self.f.create_group("stimuli"), self.f.create_group("responses")
        else:
            self._ragged_init(items)

    def __enter__(self) -> H5Writer:
        return self

    def __exit__(self, *exc) -> None:
        try:
            if exc[0] is None:
                self._finish()
        finally:
            self._stack.__exit__(*exc)

    def add(self, entries: list[tuple[Item, dict[str, np.ndarray]]], inter=None) -> None:
        """Stimuli of one job folder, each with its flat spike indices per population; `inter`:
        the job's intermediates.npz (files.Npz) when they are copied."""
        for it, _ in entries:
            self.rows.append({"stimulus_id": it.id, **flat_params(it, self.swept)})
        if self.layout == "groups":
            # the chunks of a few stimuli at a time: deflate_chunks holds ~500 bytes per spike
            start, spikes = 0, 0
            for i, (_, flats) in enumerate(entries):
                spikes += sum(f.size for f in flats.values())
                if spikes >= DEFLATE_SPIKES or i == len(entries) - 1:
                    self._groups(entries[start : i + 1], len(entries) - i - 1)
                    start, spikes = i + 1, 0
        else:
            self._ragged(entries)
        if inter is not None and self.intermediates:
            parent = self.resp_g if self.layout == "groups" else self.f.require_group("intermediates")
            for it, _ in entries:
                if "intermediates" not in it.job["files"]:
                    continue
                r = parent.require_group(it.id)
                prefix = f"{it.record['id']}/"
                stored = {key[len(prefix):]: inter.view(key) for key in inter.files if key.startswith(prefix)}
                made, aliases = documented(stored, it.job["dt"])
                for name, a in {**stored, **made}.items():
                    d = r.create_dataset(name, data=a, compression="gzip" if a.size else None,
                                         compression_opts=4 if a.size else None)
                    d.attrs["unit"] = _unit(name)
                for alias, name in aliases.items():
                    r[alias] = r[name]  # a hard link: the documented name, no second copy

    def _groups(self, entries, after: int) -> None:
        """Stimuli of self.rows[-len(entries) - after:-after or None]: groups, attributes, rasters."""
        plans, sizes, positions = [], [], []
        for it, flats in entries:
            steps = it.job["steps"]
            for pop in POPULATIONS:
                n = it.job["counts"][pop]
                rows, chunks = raster_chunks(flats[pop], steps, n) if steps * n else (1, [])
                plans.append((pop, steps, n, rows, [r for r, _ in chunks]))
                sizes += [rows * n] * len(chunks)
                positions += [p for _, p in chunks]
        starts = np.cumsum([0] + [p.size for p in positions])
        streams = iter(deflate_chunks(np.array(sizes, np.int64), np.concatenate(positions) if positions
                                      else np.zeros(0, np.int64), starts))
        plans = iter(plans)
        ll = self.ll
        rows = self.rows[len(self.rows) - len(entries) - after : len(self.rows) - after]
        for (it, _), row in zip(entries, rows):
            ll.attrs(ll.group(self.stim_g.id, it.id), {k: v for k, v in row.items() if k != "stimulus_id"})
            r = ll.group(self.resp_g.id, it.id)
            for _ in POPULATIONS:
                pop, steps, n, rows, starts_ = next(plans)
                ll.raster(r, f"{pop}_spikes", steps, n, rows, [(row, next(streams)) for row in starts_])

    # -- ragged ---------------------------------------------------------------------------------

    def _ragged_init(self, items: list[Item]) -> None:
        big = any(it.job["steps"] * it.job["counts"][p] >= 2**31 for it in items for p in POPULATIONS)
        s = self.f.create_group("spikes")
        s.attrs["codec"] = "index holds t * N + n of each spike; stimulus i: index[offsets[i]:offsets[i + 1]]"
        self.ragged = {}
        for pop in POPULATIONS:
            g = s.create_group(pop)
            ds = g.create_dataset("index", shape=(0,), maxshape=(None,), dtype=np.int64 if big else np.int32,
                                  chunks=(2**16,), compression="gzip", compression_opts=1, shuffle=True)
            self.ragged[pop] = {"ds": ds, "buf": [], "n_buf": 0, "done": 0, "offsets": [0], "afferents": []}
        self.steps: list[int] = []

    def _ragged(self, entries) -> None:
        for it, flats in entries:
            self.steps.append(it.job["steps"])
            for pop in POPULATIONS:
                r = self.ragged[pop]
                r["buf"].append(flats[pop])
                r["n_buf"] += flats[pop].size
                r["offsets"].append(r["offsets"][-1] + flats[pop].size)
                r["afferents"].append(it.job["counts"][pop])
                if r["n_buf"] >= 2**20:  # large appends, memory bounded
                    self._flush(r)

    @staticmethod
    def _flush(r: dict) -> None:
        if r["n_buf"]:
            ds, n = r["ds"], r["done"]
            ds.resize((n + r["n_buf"],))
            ds[n:] = np.concatenate(r["buf"])
            r["done"], r["buf"], r["n_buf"] = n + r["n_buf"], [], 0

    def _finish(self) -> None:
        table, js = stimuli_table(self.rows)
        ds = self.f.create_dataset("stimuli_table", data=table)
        ds.attrs["json_columns"] = json.dumps(js)
        if self.layout == "ragged":
            s = self.f["spikes"]
            s.create_dataset("steps", data=np.array(self.steps, np.int64))
            for pop, r in self.ragged.items():
                self._flush(r)
                s[pop].create_dataset("offsets", data=np.array(r["offsets"], np.int64))
                s[pop].create_dataset("afferents", data=np.array(r["afferents"], np.int64))


def write_hdf5(path: Path, items: list[Item], swept: list[str], meta: dict, intermediates: bool,
               layout: str = "groups") -> None:
    """results.h5 of `items` on its own (aggregate.py feeds an H5Writer in its one pass)."""
    spikes, inter = NpzReader("spikes"), NpzReader("intermediates")
    try:
        with H5Writer(path, items, swept, meta, intermediates, layout) as w:
            for it in items:
                z = inter(it) if intermediates and "intermediates" in it.job["files"] else None
                w.add([(it, {p: spikes.flat(it, p) for p in POPULATIONS})], z)
    finally:
        spikes.close()
        inter.close()
