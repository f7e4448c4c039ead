"""The SHAP engine: DeepExplainer when it applies and adds up, else GradientExplainer.

The explainer is shap's ``DeepExplainer`` when every leaf module of the sub-network is one it
handles and its explanations add up (``sum(SHAP) + expected value == output`` within ``tol``
on a probe of a few cells, then on all cells), else ``GradientExplainer`` (expected
gradients); which one was used is recorded in the :class:`ShapResult`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from mmint.errors import InputError

EXPLAINERS = ("auto", "deep", "gradient")
#: rows of one expected-gradients pass (the samples of ``GRADIENT_ROWS // nsamples`` cells)
GRADIENT_ROWS = 4096
#: leaf modules without a DeepExplainer rule that are linear in their input (its pass-through
#: gradient is then exact)
LINEAR_LEAVES = {"WeightedMeanFuser", "AppendConstant"}


@dataclass
class ShapResult:
    """SHAP values of ``k`` outputs for ``n`` cells and ``p`` inputs.

    Attributes
    ----------
    values
        ``(n, p, k)`` SHAP values.
    expected
        ``(k,)`` mean output over the background.
    output
        ``(n, k)`` outputs of the explained cells.
    explainer
        ``"deep"`` or ``"gradient"``.
    additivity_error
        ``max |output - expected - sum_p values|`` over cells and outputs (exact up to float
        error for DeepExplainer; only approximate for expected gradients).
    reason
        Why DeepExplainer was not used (empty when it was).
    """

    values: np.ndarray
    expected: np.ndarray
    output: np.ndarray
    explainer: str
    additivity_error: float
    reason: str = ""

    def importance(self) -> np.ndarray:
        """Mean ``|SHAP|`` over cells, ``(p, k)``."""
        return np.abs(self.values).mean(axis=0)


def deep_supported(net: nn.Module) -> tuple[bool, str]:
    """Whether every leaf module of ``net`` is one shap's DeepExplainer has a rule for."""
    try:
        from shap.explainers._deep.deep_pytorch import op_handler
    except ImportError:  # pragma: no cover - shap layout changed
        return True, ""
    unknown = sorted(
        {type(m).__name__ for m in net.modules() if not list(m.children())}
        - set(op_handler)
        - LINEAR_LEAVES
    )
    if unknown:
        return False, f"DeepExplainer has no rule for {', '.join(unknown)}"
    return True, ""


def _as_3d(values: Any) -> np.ndarray:
    if isinstance(values, list):
        values = np.stack([np.asarray(v) for v in values], axis=-1)
    values = np.asarray(values, dtype=np.float64)
    return values[..., None] if values.ndim == 2 else values


def _additivity(values: np.ndarray, expected: np.ndarray, output: np.ndarray) -> float:
    if len(output) == 0:
        return 0.0
    return float(np.abs(output - expected[None] - values.sum(axis=1)).max())


def _deep(net: nn.Module, bg: torch.Tensor, x: torch.Tensor) -> np.ndarray:
    import shap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        explainer = shap.DeepExplainer(net, bg)
        return _as_3d(explainer.shap_values(x, check_additivity=False))


def expected_gradients(
    net: nn.Module, bg: torch.Tensor, x: torch.Tensor, nsamples: int, batch_size: int, seed: int
) -> np.ndarray:
    """shap's ``GradientExplainer`` values (expected gradients), computed in batches.

    The same estimator and the same random draws as ``shap.GradientExplainer(net, bg)
    .shap_values(x, nsamples=nsamples, rseed=seed)``: for cell ``j`` and sample ``k``, a
    background row ``r`` (``choice``) and ``t ~ U(0, 1)`` (``uniform``) drawn from a legacy
    ``RandomState(seed)`` in shap's order (cells, then samples; the same draws for every
    output), the gradient of each output at ``t x_j + (1 - t) bg_r`` times ``x_j - bg_r``,
    averaged over ``k``. Where shap runs one forward and backward pass per cell and output,
    this runs one forward pass over ``batch_size`` cells' samples and one backward pass per
    output (``net`` must treat rows independently, as in eval mode), so the values equal
    shap's up to float rounding. Returns ``(n, p, k)``.
    """
    n, p = x.shape
    rs = np.random.RandomState(seed)
    draws = [(rs.choice(bg.shape[0]), rs.uniform()) for _ in range(n * nsamples)]
    rows = torch.as_tensor(np.array([r for r, _ in draws], dtype=np.int64)).view(n, nsamples)
    t = torch.as_tensor(np.array([t for _, t in draws], dtype=np.float32)).view(n, nsamples, 1)
    ref = bg[rows]  # (n, nsamples, p)
    xs = x.unsqueeze(1)
    inputs = t * xs + (1 - t) * ref
    delta = (xs - ref).double()
    cells = max(1, batch_size // max(1, nsamples))  # cells per forward pass
    out: list[np.ndarray] = []
    for c0 in range(0, n, cells):
        chunk = inputs[c0 : c0 + cells].reshape(-1, p).clone().requires_grad_()
        y = net(chunk).reshape(len(chunk), -1)
        k = y.shape[1]
        grads = [
            torch.autograd.grad(y[:, i].sum(), chunk, retain_graph=i + 1 < k)[0] for i in range(k)
        ]
        g = torch.stack(grads, -1).double().view(-1, nsamples, p, k)
        out.append((g * delta[c0 : c0 + cells].unsqueeze(-1)).mean(1).numpy())
    return np.concatenate(out) if out else np.zeros((0, p, 1))


def shap_values(
    net: nn.Module,
    x: np.ndarray | torch.Tensor,
    background: np.ndarray | torch.Tensor,
    explainer: str = "auto",
    nsamples: int = 200,
    batch_size: int | None = None,
    seed: int = 0,
    tol: float = 1e-2,
    n_probe: int = 2,
) -> ShapResult:
    """SHAP values of ``net`` (``(n, p) -> (n, k)``) for cells ``x`` against ``background``.

    Parameters
    ----------
    explainer
        ``"auto"`` (DeepExplainer when supported and additive within ``tol``, else
        GradientExplainer), ``"deep"`` (DeepExplainer, error when not additive) or
        ``"gradient"``.
    nsamples, batch_size
        GradientExplainer samples per cell, and rows per gradient pass (default 4,096: the
        samples of ``batch_size // nsamples`` cells; see :func:`expected_gradients`).
    seed
        Seed of GradientExplainer's sampling.
    tol
        Additivity tolerance (shap's own check uses 1e-2).
    n_probe
        Cells DeepExplainer is first tried on before explaining all of them.
    """
    if explainer not in EXPLAINERS:
        raise InputError(
            f"unknown explainer '{explainer}'", "explain.explainer", f"use {EXPLAINERS}"
        )
    net = net.eval()
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
    bg = torch.as_tensor(np.asarray(background, dtype=np.float32))
    with torch.no_grad():
        out = net(xt).double().numpy()
        expected = net(bg).double().mean(0).numpy()
    out = out.reshape(len(xt), -1)
    expected = expected.reshape(-1)
    reason = ""
    if explainer in ("auto", "deep"):
        ok, reason = deep_supported(net)
        if ok:
            try:
                probe = _deep(net, bg, xt[:n_probe])
                err = _additivity(probe, expected, out[:n_probe])
                if err <= tol:
                    rest = _deep(net, bg, xt[n_probe:]) if len(xt) > n_probe else probe[:0]
                    values = np.concatenate([probe, rest]) if len(rest) else probe
                    err = _additivity(values, expected, out)
                    if err <= tol:
                        return ShapResult(values, expected, out, "deep", err)
                reason = f"DeepExplainer additivity error {err:.3g} > {tol:g}"
            except Exception as exc:  # shap raises many kinds on unsupported graphs
                reason = f"DeepExplainer failed: {type(exc).__name__}: {exc}"[:300]
        if explainer == "deep":
            raise RuntimeError(f"DeepExplainer cannot explain this network: {reason}")
    values = expected_gradients(net, bg, xt, nsamples, batch_size or GRADIENT_ROWS, seed)
    return ShapResult(
        values, expected, out, "gradient", _additivity(values, expected, out), reason or "asked"
    )
