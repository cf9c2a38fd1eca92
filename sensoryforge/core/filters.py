"""Temporal filters of the pooled pressure: impulse responses (the analytic forms the tests check)
and their application by FFT to a stimulus' temporal factors."""

from __future__ import annotations

import functools
import math

import numpy as np
import torch


def lowpass_response(tau: float, dt: float, n: int) -> np.ndarray:
    """Impulse response of y[t] = a y[t-1] + (1 - a) x[t], a = exp(-dt/tau) (unit DC gain)."""
    a = math.exp(-dt / tau)
    return (1 - a) * a ** np.arange(n, dtype=np.float64)


def velocity_response(tau: float, dt: float, n: int, order: int = 1) -> np.ndarray:
    """(tau d/dt)^order of order + 1 cascaded low-passes: a band-pass with gain
    (tau w)^order / (1 + (tau w)^2)^((order + 1) / 2), peaking at w = sqrt(order) / tau.
    order 1 is the velocity (6 dB/octave below the peak), order 2 the acceleration (12 dB/octave)."""
    a = math.exp(-dt / tau)
    m = np.arange(n, dtype=np.float64)
    ways = np.ones(n)  # binomial (m + order choose order): the cascade's impulse response
    for i in range(1, order + 1):
        ways = ways * (m + i) / i
    g = (1 - a) ** (order + 1) * ways * a**m
    for _ in range(order):
        g = tau / dt * np.diff(g, prepend=0.0)
    return g


RESPONSES = {"lowpass": lowpass_response, "velocity": velocity_response}


class FilterBank:
    """The filters' transfer functions on one time base (cached per kind and tau), applied by FFT.

    The FFT is at least twice the signal long, so the product of spectra is a linear (causal)
    convolution, not a circular one. Filters run in `fft_dtype` (double precision where the device
    has it) and come back in `dtype`."""

    def __init__(self, steps: int, dt: float, device, dtype, fft_dtype):
        self.steps, self.dt = steps, dt
        self.device, self.dtype, self.fft_dtype = device, dtype, fft_dtype
        self.nfft = 1 << (2 * steps - 1).bit_length()
        self._cache: dict[tuple, torch.Tensor] = {}

    def transfer(self, kind: str, tau: float, *args) -> torch.Tensor:
        """The spectrum of RESPONSES[kind] with time constant tau (ms) and further arguments."""
        key = (kind, tau, *args)
        if key not in self._cache:
            spectrum = _spectrum(kind, float(tau), self.dt, self.steps, self.nfft, self.fft_dtype,
                                 args)
            self._cache[key] = spectrum.to(self.device)
        return self._cache[key]

    def spectrum(self, temporal: torch.Tensor) -> torch.Tensor:
        """Spectra [K, F] of temporal factors [T, K]."""
        return torch.fft.rfft(temporal.T.to(self.fft_dtype), n=self.nfft)

    def apply(self, spectrum: torch.Tensor, transfer: torch.Tensor) -> torch.Tensor:
        """The filtered factors [T, K] from their spectra [K, F]."""
        return torch.fft.irfft(spectrum * transfer, n=self.nfft)[:, : self.steps].T.to(self.dtype)


@functools.lru_cache(maxsize=64)
def _spectrum(kind: str, tau: float, dt: float, steps: int, nfft: int, dtype, args: tuple):
    """A transfer function on the CPU, kept across filter banks: every patch built in a process
    (a sweep's jobs, a test's simulators) shares the few it uses. Read-only to its users."""
    h = torch.from_numpy(RESPONSES[kind](tau, dt, steps, *args)).to(dtype)
    return torch.fft.rfft(h, n=nfft)
