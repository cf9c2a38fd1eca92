"""The fused spiking loop on the CPU (numba): drive, input noise and neuron model in one pass.

Each (stimulus, block of afferents) is one task of a parallel loop; inside it every afferent's
state lives in small arrays that stay in L1 cache for all the steps, and the loop over the block's
afferents is written so that LLVM vectorises it (no calls, branches only as selects). The drive
is formed here from the stimulus' factors (a per-population time course times a per-afferent
coefficient) or read from a dense [T, N] drive when the stimulus is not separable, so no
[B, T, N] drive tensor exists.

The input noise comes from a counter-based generator, Philox4x32-10 (Salmon et al. 2011,
"Parallel random numbers: as easy as 1, 2, 3", SC'11), keyed by the trial's noise seed with the
counter (step group, afferent, population): the numbers an afferent sees depend on nothing else,
so spikes are bit-identical whatever the batch, chunk, order, thread count, launcher or resume,
and a restricted patch (a few afferents) sees the same noise as the whole one. Four 32-bit words
give two Box-Muller pairs, i.e. the standard normals of four consecutive steps.

The maths functions below (log, sin/cos, exp) are short polynomial approximations in float32
(relative error about 1e-7, checked against numpy in tests/test_kernel.py) because calls into the
C library would stop the vectorisation; `sensoryforge.core.noise` computes the same numbers with
torch for other devices and as the reference.

No fast-math: without reassociation or contraction into FMA, the vectorised and the scalar
remainder of a loop give the same bits, so an afferent's spikes do not depend on its lane. The one
departure from IEEE defaults: on x86 the loop flushes subnormal floats to zero (_FTZ_DAZ).
"""

from __future__ import annotations

import math
import platform

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

IZHIKEVICH, LIF, ADEX = 0, 1, 2
# per-afferent inputs of the loop, rows of `common` (float32 [len(COMMON), N])
COMMON = ("saturation", "bias", "scale", "noise_sd", "noise_scaling", "noise_decay", "noise_kick", "refractory")
# per-model parameter rows (float32 [k, N]) and state rows
PARAMS = {
    IZHIKEVICH: ("a", "b", "c", "d", "v_peak"),
    LIF: ("v_rest", "resistance", "leak", "v_reset", "v_threshold"),  # leak = exp(-dt / tau_m)
    ADEX: ("C", "g_L", "E_L", "V_T", "delta_T", "tau_w", "a", "b", "V_reset", "V_peak"),
}
STATE_ROWS = 2
# a block's loops run over a multiple of this many columns (padding repeats its last afferent), so
# no afferent falls into a loop's scalar remainder, which costs several times a vector lane
LANES = 16

# Philox4x32-10 constants (multipliers and Weyl key increments of the paper)
_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
_MASK = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)

_LN2 = np.float32(math.log(2.0))
_SQRT_HALF = np.float32(math.sqrt(0.5))
_QUARTER_PI = np.float32(math.pi / 4)
_ROUNDER = np.float32(1.5 * 2**23)
_ROUNDER_BITS = np.int32(0x4B400000)  # the bits of _ROUNDER


@intrinsic
def _bits(typingctx, x):
    """float32 -> its bits as int32."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.int32(types.float32), codegen


@intrinsic
def _float(typingctx, i):
    """int32 bits -> float32."""
    if i != types.int32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


# MXCSR's flush-to-zero and denormals-are-zero bits (x86): the loop runs with them set, because
# products like a narrow stimulus' far tail (coefficient 1e-40 x time course) are subnormal
# floats, each a microcode assist of ~100 cycles: sigma 0.3 mm made a stimulus 3.3x slower.
# Flushed, such a value is 0 instead of < 1.2e-38, which every sum it enters (membrane ~ -65 mV,
# bias, noise) rounds away: the spikes are the same (tests/test_kernel.py).
_FTZ_DAZ = np.uint32(0x8040)
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")


def _mxcsr_call(builder, name: str, slot) -> None:
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [slot.type]), name)
    builder.call(fn, [slot])


@intrinsic
def _get_mxcsr(typingctx):
    """The calling thread's MXCSR (0 off x86)."""

    def codegen(context, builder, signature, args):
        if not _X86:
            return ir.Constant(ir.IntType(32), 0)
        slot = cgutils.alloca_once(builder, ir.IntType(32))
        _mxcsr_call(builder, "llvm.x86.sse.stmxcsr", slot)
        return builder.load(slot)

    return types.uint32(), codegen


@intrinsic
def _set_mxcsr(typingctx, value):
    """Sets the calling thread's MXCSR to an integer's low 32 bits (nothing off x86)."""
    if not isinstance(value, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        if _X86:
            slot = cgutils.alloca_once(builder, ir.IntType(32))
            builder.store(builder.trunc(args[0], ir.IntType(32)) if value.bitwidth > 32 else args[0], slot)
            _mxcsr_call(builder, "llvm.x86.sse.ldmxcsr", slot)
        return context.get_dummy_value()

    return types.none(value), codegen


@njit(inline="always")
def _flush_subnormals():
    """Sets _FTZ_DAZ on the calling thread; returns its mode before, for _set_mxcsr after."""
    saved = _get_mxcsr()
    _set_mxcsr(saved | _FTZ_DAZ)
    return saved


@njit(inline="always", error_model="numpy")
def philox(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 of counter (c0..c3) under key (k0, k1): four uint32 words (as uint64).
    The inputs are masked to 32 bits so that LLVM knows every product is 32 x 32 -> 64 bits."""
    c0, c1, c2, c3, k0, k1 = c0 & _MASK, c1 & _MASK, c2 & _MASK, c3 & _MASK, k0 & _MASK, k1 & _MASK
    for _ in range(10):
        p0 = _M0 * c0
        p1 = _M1 * c2
        c0, c1, c2, c3 = ((p1 >> _S32) ^ c1 ^ k0), p1 & _MASK, ((p0 >> _S32) ^ c3 ^ k1), p0 & _MASK
        k0 = (k0 + _W0) & _MASK
        k1 = (k1 + _W1) & _MASK
    return c0, c1, c2, c3


@njit(inline="always", error_model="numpy")
def log32(x):
    """Natural log of a float32 x > 0 (normal numbers): x = m 2^e with m in [sqrt(1/2), sqrt(2)),
    log(m) = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.172, by its series to s^9."""
    i = _bits(np.float32(x))
    # numba widens integer arithmetic to 64 bits; the exponent goes to float from 32 bits (one
    # vector instruction) and is adjusted in float
    e = np.float32(np.float32(np.int32(i >> np.int32(23))) - np.float32(127.0))
    m = _float(np.int32((i & np.int32(0x7FFFFF)) | np.int32(0x3F800000)))  # [1, 2)
    big = m > np.float32(1.4142135)
    m = np.float32(m * np.float32(0.5)) if big else m
    e = np.float32(e + np.float32(1.0)) if big else e
    s = np.float32((m - np.float32(1.0)) / (m + np.float32(1.0)))
    s2 = np.float32(s * s)
    p = np.float32(np.float32(1.0 / 9.0) * s2 + np.float32(1.0 / 7.0))
    p = np.float32(p * s2 + np.float32(1.0 / 5.0))
    p = np.float32(p * s2 + np.float32(1.0 / 3.0))
    p = np.float32(p * s2 + np.float32(1.0))
    return np.float32(np.float32(np.float32(2.0) * s * p) + np.float32(e * _LN2))


@njit(inline="always", error_model="numpy")
def sincos_turn(w):
    """(cos, sin) of 2 pi w / 2^32 for a uint32 word w held in an int32 (its bits): its top two
    bits pick the quadrant, the other 30 an angle in [-pi/4, pi/4) around the quadrant's first
    octant's edge, where the Taylor series to degree 8/9 is exact to float32."""
    q = np.int32((w >> np.int32(30)) & np.int32(3))
    f = np.float32(np.float32(np.int32(w & np.int32(0x3FFFFFFF))) * np.float32(2.0**-30))  # [0, 1)
    a = np.float32(f * np.float32(2.0 * _QUARTER_PI) - _QUARTER_PI)  # angle - pi/4, in [-pi/4, pi/4)
    a2 = np.float32(a * a)
    s = np.float32(np.float32(1.0 / 362880.0) * a2 - np.float32(1.0 / 5040.0))
    s = np.float32(s * a2 + np.float32(1.0 / 120.0))
    s = np.float32(s * a2 - np.float32(1.0 / 6.0))
    s = np.float32(np.float32(s * a2 + np.float32(1.0)) * a)
    c = np.float32(np.float32(1.0 / 40320.0) * a2 - np.float32(1.0 / 720.0))
    c = np.float32(c * a2 + np.float32(1.0 / 24.0))
    c = np.float32(c * a2 - np.float32(0.5))
    c = np.float32(c * a2 + np.float32(1.0))
    # rotate back by pi/4: the angle within the quadrant, in [0, pi/2)
    cq = np.float32(np.float32(c - s) * _SQRT_HALF)
    sq = np.float32(np.float32(c + s) * _SQRT_HALF)
    # then by the quadrant: a quarter turn for bit 0, a half turn for bit 1 (selects, no switch)
    odd = (q & np.int32(1)) != 0
    x = -sq if odd else cq
    y = cq if odd else sq
    half = (q & np.int32(2)) != 0
    return (-x if half else x), (-y if half else y)


@njit(inline="always", error_model="numpy")
def exp32(x):
    """exp of a float32, clamped to [-87, 87]: 2^k e^r with |r| <= ln2 / 2, Taylor to r^7. k is
    rounded by adding 1.5 2^23 (the sum's low mantissa bits are then k), which stays in float32
    lanes where math.floor would go through 64-bit integers."""
    x = min(max(np.float32(x), np.float32(-87.0)), np.float32(87.0))
    shifted = np.float32(np.float32(x * np.float32(1.0 / math.log(2.0))) + _ROUNDER)
    k = np.float32(shifted - _ROUNDER)
    r = np.float32(np.float32(x - k * np.float32(0.693145751953125)) - k * np.float32(1.428606765330187e-06))
    p = np.float32(np.float32(1.0 / 5040.0) * r + np.float32(1.0 / 720.0))
    p = np.float32(p * r + np.float32(1.0 / 120.0))
    p = np.float32(p * r + np.float32(1.0 / 24.0))
    p = np.float32(p * r + np.float32(1.0 / 6.0))
    p = np.float32(p * r + np.float32(0.5))
    p = np.float32(p * r + np.float32(1.0))
    p = np.float32(p * r + np.float32(1.0))
    ki = np.int32(_bits(shifted) - _ROUNDER_BITS)
    return np.float32(p * _float(np.int32((ki + np.int32(127)) << np.int32(23))))


@njit(inline="always", error_model="numpy")
def saturate(d, s):
    """s tanh(d / s) for s > 0 (tanh from exp), d unchanged for s = 0."""
    y = np.float32(d / s) if s > np.float32(0.0) else np.float32(0.0)
    e = exp32(np.float32(-2.0) * abs(y))
    t = np.float32(np.float32(np.float32(1.0) - e) / np.float32(np.float32(1.0) + e))
    t = t if y >= np.float32(0.0) else -t
    return np.float32(s * t) if s > np.float32(0.0) else d


@njit(inline="always", error_model="numpy")
def _normals(z, bits, group, lo, width, afferent, population, k0, k1):
    """Standard normals of steps 4 group .. 4 group + 3 for afferents lo .. lo + width. Two
    loops: the counter's words (64-bit integer lanes) into `bits`, then Box-Muller on them in
    32-bit lanes, twice as many per vector as one loop mixing both would get."""
    g = np.uint64(group)
    for j in range(width):
        x0, x1, x2, x3 = philox(g, np.uint64(afferent[lo + j]), np.uint64(population[lo + j]), np.uint64(0), k0, k1)
        bits[0, j] = np.int32(x0 >> np.uint64(8))  # the top 24 bits, for a uniform
        bits[1, j] = np.int32(x1)  # all 32, for an angle
        bits[2, j] = np.int32(x2 >> np.uint64(8))
        bits[3, j] = np.int32(x3)
    for j in range(width):
        # uniforms in (0, 1), never 0
        u0 = np.float32(np.float32(bits[0, j]) * np.float32(2.0**-24) + np.float32(2.0**-25))
        u2 = np.float32(np.float32(bits[2, j]) * np.float32(2.0**-24) + np.float32(2.0**-25))
        r0 = np.float32(math.sqrt(np.float32(np.float32(-2.0) * log32(u0))))
        r2 = np.float32(math.sqrt(np.float32(np.float32(-2.0) * log32(u2))))
        c1, s1 = sincos_turn(bits[1, j])
        c3, s3 = sincos_turn(bits[3, j])
        z[0, j] = np.float32(r0 * c1)
        z[1, j] = np.float32(r0 * s1)
        z[2, j] = np.float32(r2 * c3)
        z[3, j] = np.float32(r2 * s3)


@njit(cache=True, error_model="numpy")
def normals(seed_lo, seed_hi, steps, afferent, population):
    """The standard normals [steps + 1, N] the loop uses for one trial (for tests and the
    reference path): step j's number for afferent n."""
    n = afferent.shape[0]
    out = np.empty((steps + 1, n), np.float32)
    z = np.empty((4, n), np.float32)
    bits = np.empty((4, n), np.int32)
    for g in range(steps // 4 + 1):
        _normals(z, bits, g, 0, n, afferent, population, np.uint64(seed_lo), np.uint64(seed_hi))
        for q in range(4):
            if 4 * g + q <= steps:
                out[4 * g + q] = z[q]
    return out


@njit(inline="always", error_model="numpy")
def _padded(rows, lo, width, n):
    """rows[:, lo:lo + width] as a C array of n >= width columns, the last column repeated."""
    out = np.empty((rows.shape[0], n), rows.dtype)
    for r in range(rows.shape[0]):
        for j in range(n):
            out[r, j] = rows[r, lo + min(j, width - 1)]
    return out


@njit(cache=True, error_model="numpy")
def _block(model, T, dt, course_p, coef, dense, lo, width, common, params, init, afferent, population,
           k0, k1, spikes, active, drive_out, volt_out, record):
    """One stimulus' block of afferents lo .. lo + width through all T steps. Its inputs are
    copied into C arrays of n columns (padded to LANES), so that every loop over the block is one
    unit-stride vector loop; each step is two such passes: the input current, then the model."""
    n = (width + LANES - 1) // LANES * LANES
    st = _padded(init, lo, width, n)
    v, w = st[0], st[1]
    c8 = _padded(common, lo, width, n)
    sat, bias, scale, sd0, sdk, decay, kick = c8[0], c8[1], c8[2], c8[3], c8[4], c8[5], c8[6]
    p = _padded(params, lo, width, n)
    aff = _padded(afferent.reshape((1, afferent.shape[0])), lo, width, n)[0]
    pop = _padded(population.reshape((1, population.shape[0])), lo, width, n)[0]
    refr = np.empty(n, np.int32)
    for j in range(n):
        refr[j] = np.int32(c8[7, j])
    ou = np.empty(n, np.float32)
    held = np.zeros(n, np.int32)  # refractory steps still to hold
    z = np.empty((4, n), np.float32)
    bits = np.empty((4, n), np.int32)
    drive = np.zeros(n, np.float32)
    current = np.empty(n, np.float32)
    fired = np.empty(n, np.bool_)
    fired8 = fired.view(np.uint8)  # the same bytes, for a reduction LLVM vectorises
    real = np.zeros(n, np.uint8)  # 1 for the block's afferents, 0 for its padding
    real[:width] = 1
    _normals(z, bits, 0, 0, n, aff, pop, k0, k1)
    for j in range(n):
        ou[j] = z[0, j]
    factored = dense.shape[0] == 0
    saturating = sat.max() > np.float32(0.0)  # a population's blocks share its saturation
    cf = np.zeros(n, np.float32)
    if factored:
        for j in range(width):
            cf[j] = coef[lo + j]
    for t in range(T):
        step = t + 1  # noise number 0 started the process; step t uses number t + 1
        q = step % 4
        if q == 0:
            _normals(z, bits, step // 4, 0, n, aff, pop, k0, k1)
        if factored:
            c = course_p[t]
            for j in range(n):
                drive[j] = np.float32(c * cf[j])
        else:
            for j in range(width):
                drive[j] = dense[t, lo + j]
        if saturating:
            for j in range(n):
                drive[j] = saturate(drive[j], sat[j])
        for j in range(n):
            d = np.float32(drive[j] + bias[j])
            drive[j] = d
            cur = np.float32(d * scale[j])
            o = np.float32(np.float32(decay[j] * ou[j]) + np.float32(kick[j] * z[q, j]))
            ou[j] = o
            sd = np.float32(sd0[j] + np.float32(sdk[j] * max(cur, np.float32(0.0))))
            current[j] = np.float32(cur + np.float32(o * sd))
        if model == IZHIKEVICH:
            _izhikevich(v, w, held, fired, current, p, refr, dt, n)
        elif model == LIF:
            _lif(v, w, held, fired, current, p, refr, n)
        else:
            _adex(v, w, held, fired, current, p, refr, dt, n)
        # spikes are rare: one vector OR over the block's afferents (not its padding) finds the
        # steps with any, and only those write their row (zeros in)
        hit = np.uint8(0)
        for j in range(n):
            hit |= fired8[j] & real[j]
        if hit:
            for j in range(width):
                spikes[t, lo + j] = fired[j]
            active[t] = True  # other blocks may write True here too: the same byte, the same value
        if record:
            for j in range(width):
                drive_out[t, lo + j] = drive[j]
                volt_out[t, lo + j] = v[j]


@njit(inline="always", error_model="numpy")
def _izhikevich(v, w, held, fired, current, p, refr, dt, width):
    """Izhikevich (2003), one Euler step; w is the recovery variable u."""
    for j in range(width):
        a, b, reset, jump, peak = p[0, j], p[1, j], p[2, j], p[3, j], p[4, j]
        vj, wj, h, r = v[j], w[j], held[j], refr[j]
        dv = np.float32(np.float32(np.float32(np.float32(0.04) * vj) + np.float32(5.0)) * vj)
        dv = np.float32(np.float32(dv + np.float32(current[j] + np.float32(140.0))) - wj)
        wn = np.float32(wj + np.float32(np.float32(dt * a) * np.float32(np.float32(b * vj) - wj)))
        vn = np.float32(vj + np.float32(dt * dv))
        fired[j], v[j], w[j], held[j] = _spike(vn, wn, h, r, reset, jump, peak)


@njit(inline="always", error_model="numpy")
def _lif(v, w, held, fired, current, p, refr, width):
    """Leaky integrate-and-fire, exact over the step for constant input (leak = exp(-dt/tau))."""
    for j in range(width):
        rest, res, leak, reset, peak = p[0, j], p[1, j], p[2, j], p[3, j], p[4, j]
        vj, wj, h, r = v[j], w[j], held[j], refr[j]
        v_inf = np.float32(rest + np.float32(res * current[j]))
        vn = np.float32(v_inf + np.float32(np.float32(vj - v_inf) * leak))
        fired[j], v[j], w[j], held[j] = _spike(vn, wj, h, r, reset, np.float32(0.0), peak)


@njit(inline="always", error_model="numpy")
def _adex(v, w, held, fired, current, p, refr, dt, width):
    """Adaptive exponential integrate-and-fire (Brette & Gerstner 2005), one Euler step."""
    for j in range(width):
        C, gl, el, vt, dT = p[0, j], p[1, j], p[2, j], p[3, j], p[4, j]
        tw, aa, jump, reset, peak = p[5, j], p[6, j], p[7, j], p[8, j], p[9, j]
        vj, wj, h, r = v[j], w[j], held[j], refr[j]
        leak_i = np.float32(-gl * np.float32(vj - el))
        spike_i = np.float32(np.float32(gl * dT) * exp32(np.float32(np.float32(vj - vt) / dT)))
        total = np.float32(np.float32(np.float32(leak_i + spike_i) - wj) + current[j])
        vn = np.float32(vj + np.float32(np.float32(dt / C) * total))
        wn = np.float32(wj + np.float32(np.float32(dt / tw) * np.float32(np.float32(aa * np.float32(vj - el)) - wj)))
        fired[j], v[j], w[j], held[j] = _spike(vn, wn, h, r, reset, jump, peak)


@njit(inline="always", error_model="numpy")
def _spike(vn, wn, h, r, reset, jump, peak):
    """Refractory hold (membrane at reset), threshold, reset and jump of the second variable:
    (fired, v, w, held) after the step, all as selects."""
    vn = reset if h > 0 else vn
    f = vn >= peak
    return f, (reset if f else vn), (np.float32(wn + jump) if f else wn), (r if f else np.int32(h - np.int32(1)))


@njit(parallel=True, cache=True, error_model="numpy")
def run(blocks, dt, course, coef, dense, dense_of, common, params, init, afferent, population, seeds,
        spikes, active, drive_out, volt_out, record):
    """All stimuli x blocks in parallel.

    blocks [nb, 4] int64: (model, population column in course, first afferent, width);
    course [B, T, P] float32 and coef [B, N]: the factored drive of stimulus b, afferent n at
    step t is course[b, t, pop] * coef[b, n]; dense [D, T, N]: the drive of the stimuli with
    dense_of[b] >= 0; common, params, init: per-afferent rows (COMMON, the models' PARAMS laid
    over the same N columns, the two state variables); afferent/population [N]: the noise
    counter's afferent index within its population and the population's id; seeds [B, 2] uint32
    key words; spikes [B, T, N] bool, False in (a block writes only its steps with a spike), out;
    active [B, T] bool, False in, True out at the steps where any afferent fired (encoding the
    spikes then reads only those rows); drive_out / volt_out [B, T, N] when record.
    """
    n_blocks = blocks.shape[0]
    B, T = spikes.shape[0], spikes.shape[1]
    empty = np.empty((0, 0), np.float32)
    for task in prange(B * n_blocks):
        b = task // n_blocks
        k = task - b * n_blocks
        model, pop, lo, width = blocks[k, 0], blocks[k, 1], blocks[k, 2], blocks[k, 3]
        d = dense_of[b]
        dense_b = dense[d] if d >= 0 else empty
        saved = _flush_subnormals()
        _block(model, T, dt, course[b, :, pop], coef[b], dense_b, lo, width, common, params, init,
               afferent, population, np.uint64(seeds[b, 0]), np.uint64(seeds[b, 1]), spikes[b], active[b],
               drive_out[b] if record else empty, volt_out[b] if record else empty, record)
        _set_mxcsr(saved)  # the worker thread as it was: other numba code runs on it too


@njit(cache=True, error_model="numpy")
def pool(indptr, indices, data, x, out):
    """out [N, K] = CSR (indptr, indices, data) [N, M] @ x [M, K]: each sum in the order of
    scipy's CSR product (a row's nonzeros in storage order, from 0), with subnormals flushed as
    in `run` (a narrow stimulus' tail is full of them: 7 ms instead of 1.6 ms a batch of 13)."""
    saved = _flush_subnormals()
    out[:] = 0
    for i in range(indptr.shape[0] - 1):
        for j in range(indptr[i], indptr[i + 1]):
            a, row = data[j], indices[j]
            for c in range(x.shape[1]):
                out[i, c] += a * x[row, c]
    _set_mxcsr(saved)


@njit(parallel=True, cache=True, error_model="numpy")
def encode(spikes, active, bounds):
    """The spikes of a batch in the codec of core.response, read only at the active steps:
    (flat, offsets) where flat[offsets[b P + p] : offsets[b P + p + 1]] are the sorted indices
    t n + (j - lo) of stimulus b's spikes in columns [lo, hi) = bounds[p] (n = hi - lo)."""
    B, T = spikes.shape[0], spikes.shape[1]
    P = bounds.shape[0]
    counts = np.zeros(B * P, np.int64)
    for b in prange(B):
        for t in range(T):
            if active[b, t]:
                for p in range(P):
                    c = 0
                    for j in range(bounds[p, 0], bounds[p, 1]):
                        c += spikes[b, t, j]
                    counts[b * P + p] += c
    offsets = np.zeros(B * P + 1, np.int64)
    offsets[1:] = np.cumsum(counts)
    flat = np.empty(offsets[-1], np.int64)
    for b in prange(B):
        for p in range(P):
            lo, hi = bounds[p, 0], bounds[p, 1]
            at = offsets[b * P + p]
            for t in range(T):
                if active[b, t]:
                    for j in range(lo, hi):
                        if spikes[b, t, j]:
                            flat[at] = t * (hi - lo) + j - lo
                            at += 1
    return flat, offsets
