"""``nigt-hpc bench kernels``: the policy kernels' µs per env step beside a numpy reference
(and torch's, where installed) measured in the same run."""

from __future__ import annotations

import os
import statistics
import time

import numpy as np

from .. import kernels as K
from ..kernels import batched as KB

# (name, layer sizes, head) of the four reference sizes in docs/BENCHMARKS.md
SIZES = [
    ("linear 376->17", [376, 17], K.HEAD_GAUSS_LOGSTD),
    ("mlp 376->64->64->17", [376, 64, 64, 17], K.HEAD_GAUSS_LOGSTD),
    ("mlp 11->64->64->3", [11, 64, 64, 3], K.HEAD_GAUSS_LOGSTD),
    ("softmax 4->2", [4, 2], K.HEAD_SOFTMAX),
]
T = 1000


def flops_per_step(sizes: list[int]) -> int:
    """Return matmul FLOPs per step of forward + weight gradients + hidden deltas."""
    f = sum(2 * a * b for a, b in zip(sizes[:-1], sizes[1:]))  # forward
    f += sum(2 * a * b for a, b in zip(sizes[:-1], sizes[1:]))  # dW = delta^T h
    f += sum(2 * a * b for a, b in zip(sizes[1:-1], sizes[2:]))  # delta back to hidden
    return f


def numpy_grad(theta, sizes, head, X, A, coef) -> np.ndarray:
    """Return sum_t coef[t] grad log pi(a_t|s_t), vectorised over T with matrix products."""
    layers, p = [], 0
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        W = theta[p : p + n_in * n_out].reshape(n_in, n_out).T
        p += n_out * n_in
        layers.append((W, theta[p : p + n_out]))
        p += n_out
    hs = [X]
    for l, (W, b) in enumerate(layers):
        z = hs[-1] @ W.T + b
        hs.append(np.tanh(z) if l < len(layers) - 1 else z)
    z = hs[-1]
    g_extra = []
    if head == K.HEAD_SOFTMAX:
        pr = np.exp(z - z.max(axis=1, keepdims=True))
        pr /= pr.sum(axis=1, keepdims=True)
        dz = -pr
        dz[np.arange(len(z)), A[:, 0].astype(int)] += 1.0
    else:
        inv = np.exp(-theta[p:])
        diff = A - z
        dz = diff * inv * inv
        g_extra = [coef @ (diff * diff * inv * inv - 1.0)]
    delta = dz * coef[:, None]
    grads = []
    for l in range(len(layers) - 1, -1, -1):
        W, _ = layers[l]
        grads.append((hs[l].T @ delta).ravel())
        grads.append(delta.sum(axis=0))
        if l > 0:
            delta = (delta @ W) * (1.0 - hs[l] ** 2)
    out = []
    for l in range(len(layers)):
        out += [grads[2 * (len(layers) - 1 - l)], grads[2 * (len(layers) - 1 - l) + 1]]
    return np.concatenate(out + g_extra)


def torch_act(theta, sizes, head, X, noise, distributions=False):
    """Return a function that runs per-step inference over the rows of ``X`` with torch
    (float64, no autograd, one thread): forward, sample from the pre-drawn ``noise``,
    ``log pi``, the env action back as numpy, the obs row, stored action and ``log pi`` into
    the episode's buffers -- what a torch sampler does each step (and ``kernels.act_row``).  With
    ``distributions`` the head goes through ``torch.distributions`` (Normal/Categorical,
    what most torch RL code writes); without, through plain tensor ops (the faster of the
    two).  None when torch is not installed (only a reference here, not a dependency)."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    mods, p = [], 0
    L = len(sizes) - 1
    for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = torch.nn.Linear(n_in, n_out, dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(theta[p : p + n_in * n_out].reshape(n_in, n_out).T))
            p += n_in * n_out
            lin.bias.copy_(torch.from_numpy(theta[p : p + n_out]))
            p += n_out
        mods.append(lin)
        if l < L - 1:
            mods.append(torch.nn.Tanh())
    net = torch.nn.Sequential(*mods)
    log_std = torch.from_numpy(theta[p:].copy())
    half_log_2pi = 0.5 * np.log(2.0 * np.pi)

    # the sampler's bookkeeping, as ``kernels.act_row`` does it: the obs row, the stored
    # action row and log pi go into the episode's buffers
    obs, acts, logp = np.empty_like(X), np.empty((X.shape[0], noise.shape[1])), np.empty(len(X))

    def run_dist():
        D = torch.distributions
        with torch.no_grad():
            for t in range(X.shape[0]):
                obs[t] = X[t]
                z = net(torch.from_numpy(obs[t]))
                if head == K.HEAD_SOFTMAX:
                    d = D.Categorical(logits=z)
                    cdf = torch.cumsum(d.probs, 0)
                    a = torch.clamp(torch.searchsorted(cdf, float(noise[t, 0])), max=z.shape[0] - 1)
                    acts[t, 0] = int(a)
                    logp[t] = float(d.log_prob(a))
                else:
                    d = D.Normal(z, torch.exp(log_std))
                    u = z + d.scale * torch.from_numpy(noise[t])
                    acts[t] = u.numpy()
                    logp[t] = float(d.log_prob(u).sum())
                    torch.tanh(u).numpy()

    def run():
        with torch.no_grad():
            for t in range(X.shape[0]):
                obs[t] = X[t]
                z = net(torch.from_numpy(obs[t]))
                if head == K.HEAD_SOFTMAX:
                    pr = torch.softmax(z, 0)
                    a = int(torch.searchsorted(torch.cumsum(pr, 0), float(noise[t, 0])))
                    a = min(a, pr.shape[0] - 1)
                    acts[t, 0] = a
                    logp[t] = float(torch.log(pr[a]))
                else:
                    std = torch.exp(log_std)
                    u = z + std * torch.from_numpy(noise[t])
                    acts[t] = u.numpy()
                    lp = (-0.5 * ((u - z) / std) ** 2 - log_std - half_log_2pi).sum()
                    logp[t] = float(lp)
                    torch.tanh(u).numpy()
    return run_dist if distributions else run


def _median_time(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_kernels(repeat: int = 5) -> list[dict]:
    """Return one row per reference size with our and numpy's µs per step."""
    K.warmup()
    return [_bench_one(name, sizes_l, head, repeat) for name, sizes_l, head in SIZES]


def _bench_one(name: str, sizes_l: list[int], head: int, repeat: int) -> dict:
    """Return the row of one policy size."""
    sizes = np.array(sizes_l, dtype=np.int64)
    rng = np.random.default_rng(0)
    theta = K.init_theta(sizes, head, rng, -0.5, out_scale=1.0)
    theta = K.aligned_copy(theta)  # placed as the sampler places theta (Sampler._aligned)
    k = K.act_dim_of(sizes, head)
    X = rng.standard_normal((T, sizes[0]))
    A = (rng.integers(0, sizes[-1], (T, 1)).astype(float) if head == K.HEAD_SOFTMAX
         else rng.standard_normal((T, k)))
    rew = rng.standard_normal(T)
    coef = np.empty(T)
    K.reward_to_go(rew, 0.99, 1.0, coef)
    discrete = head == K.HEAD_SOFTMAX
    width = 1 if discrete else k
    plan, mem, views = K.row_buffers(sizes, head, True, np.zeros(k), np.ones(k), T, sizes[0],
                                     width)
    a, noise_buf = views["a"], views["noise"]
    act = K.act_row

    def run_act():  # as the sampler calls it: noise drawn per episode, one call per step
        if discrete:
            rng.random(out=noise_buf)
        else:
            rng.standard_normal(out=noise_buf)
        for t in range(T):
            act(theta, plan, mem, X[t], t)  # X[t]: the env's observation
            int(a[0]) if discrete else a.copy()  # the env action, as the sampler hands it on

    out = np.zeros_like(theta)

    def run_grad():
        K.grad_gpomdp(theta, sizes, head, X, A, rew, 0.99, 1.0, out)

    def run_numpy():
        numpy_grad(theta, sizes, head, X, A, coef)

    def run_matrix():
        KB.grad_gpomdp(theta, sizes, head, X, A, rew, 0.99, 1.0, out)

    ref = numpy_grad(theta, sizes, head, X, A, coef)
    mine = np.zeros_like(theta)
    K.score_sum(theta, sizes, head, X, A, coef, mine)
    err = float(np.max(np.abs(mine - ref)) / max(1e-300, np.max(np.abs(ref))))
    t_act = _median_time(run_act, repeat) / T * 1e6
    noise_t = rng.random((T, 1)) if head == K.HEAD_SOFTMAX else rng.standard_normal((T, k))
    run_torch = torch_act(theta, sizes_l, head, X, noise_t)
    t_torch = None if run_torch is None else _median_time(run_torch, repeat) / T * 1e6
    run_dist = torch_act(theta, sizes_l, head, X, noise_t, distributions=True)
    t_dist = None if run_dist is None else _median_time(run_dist, repeat) / T * 1e6
    t_grad = _median_time(run_grad, repeat) / T * 1e6
    t_np = _median_time(run_numpy, repeat) / T * 1e6
    t_mx = _median_time(run_matrix, repeat) / T * 1e6
    mx = np.zeros_like(theta)
    KB.score_sum(theta, sizes, head, X, A, coef, mx)
    err_mx = float(np.max(np.abs(mx - ref)) / max(1e-300, np.max(np.abs(ref))))
    fl = flops_per_step(sizes_l)
    return {"kernel": name, "act_us_per_step": t_act, "torch_act_us_per_step": t_torch,
            "act_speedup_vs_torch": None if t_torch is None else t_torch / t_act,
            "torch_dist_act_us_per_step": t_dist,
            "act_speedup_vs_torch_dist": None if t_dist is None else t_dist / t_act,
            "grad_us_per_step": t_grad,
            "grad_gflops": fl / (t_grad * 1e3), "numpy_grad_us_per_step": t_np,
            "grad_speedup_vs_numpy": t_np / t_grad, "flops_per_step": fl,
            "max_rel_diff_vs_numpy": err,
            "matrix_grad_us_per_step": t_mx, "matrix_gflops": fl / (t_mx * 1e3),
            "matrix_speedup_vs_numpy": t_np / t_mx, "matrix_max_rel_diff_vs_numpy": err_mx,
            "sampler_uses": "matrix" if KB.use_batched(T, len(theta)) else "per-step",
            "blas_core": blas_core(), "openblas_coretype_env": os.environ.get("OPENBLAS_CORETYPE")}


def blas_core() -> str | None:
    """Return the kernel set the loaded OpenBLAS runs ("Haswell", "SkylakeX", ...), or None
    when numpy's BLAS is not an OpenBLAS that says.

    The matrix-form gradient is BLAS products, so this decides its speed: on our AMD EPYC
    (AVX-512) OpenBLAS picks SkylakeX, and the MLP 376 gradient ran at 1.85 µs/step; with
    ``OPENBLAS_CORETYPE=Haswell`` (AVX2; set in the environment of our development machine)
    at 2.49 (measured, same hour).
    """
    import ctypes

    np.dot(np.ones((2, 2)), np.ones((2, 2)))  # numpy loads its BLAS lazily on some builds
    try:
        with open("/proc/self/maps", encoding="ascii", errors="replace") as f:
            paths = sorted({line.split()[-1] for line in f
                            if "openblas" in line.lower() and line.split()[-1][:1] == "/"})
    except OSError:  # not Linux
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename",
                     "openblas_get_corename64_", "openblas_get_corename"):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.restype = ctypes.c_char_p
                return fn().decode()
    return None


def blas_line() -> str:
    """Return the line that says which BLAS kernels ran, and who chose them."""
    pinned = os.environ.get("OPENBLAS_CORETYPE")
    why = (f"OPENBLAS_CORETYPE={pinned} set in the environment" if pinned
           else "OpenBLAS's own choice for this CPU")
    return f"BLAS: OpenBLAS {blas_core() or 'core not known (not OpenBLAS?)'} ({why})"


def print_table(rows: list[dict]) -> None:
    """Print the kernel rows as a fixed-width table."""
    print(f"kernels, float64, T={T}, µs per env step (median); numpy = vectorised reference "
          "in this run; step = per-step kernel, matrix = kernels.batched")
    print(blas_line())
    print("act = per-step inference from Python, as the sampler calls it; torch = the same "
          "with torch (float64, no_grad; plain tensor ops / torch.distributions), n/a when "
          "torch is not installed")
    print(f"{'policy':<22}{'act':>8}{'torch':>8}{'/act':>7}{'t.dist':>8}{'/act':>7}"
          f"{'step':>8}{'matrix':>8}{'GFLOP/s':>9}{'numpy':>8}{'numpy/matrix':>14}"
          f"{'sampler':>10}")
    for r in rows:
        torch_cols = ""
        for key in ("torch", "torch_dist"):
            tt = r[f"{key}_act_us_per_step"]
            torch_cols += (f"{'n/a':>8}{'n/a':>7}" if tt is None
                           else f"{tt:>8.1f}{r[f'act_speedup_vs_{key}']:>6.1f}x")
        print(f"{r['kernel']:<22}{r['act_us_per_step']:>8.2f}{torch_cols}"
              f"{r['grad_us_per_step']:>8.2f}"
              f"{r['matrix_grad_us_per_step']:>8.2f}{r['matrix_gflops']:>9.1f}"
              f"{r['numpy_grad_us_per_step']:>8.2f}{r['matrix_speedup_vs_numpy']:>13.2f}x"
              f"{r['sampler_uses']:>10}")
