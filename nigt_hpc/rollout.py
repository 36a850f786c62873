"""Sampler: trajectories of horizon H and their g_H at a given theta, on one gymnasium env.

Seeds are drawn per (run seed, global worker index, episode index) so a worker's
trajectories do not depend on how many ranks share the work.  Every trajectory keeps the
behaviour ``log pi`` of each step, so the importance-weighted kernel can re-use it later,
and, with a baseline (``nigt_hpc.estimator``), the ``b_t`` it was given when it finished.
``make_sampler`` builds a Sampler from a config.  No MPI here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import kernels as K
from .envs.compiled import CompiledEnv
from .estimator import make_baseline
from .kernels import batched as KB
from .kernels import envs as KE
from .obsnorm import make_obsnorm
from .policy import PolicySpec


@dataclass
class Trajectory:
    """One episode (or its first H steps); arrays are views into the sampler's buffers.

    ``terminated``: the MDP ended (pole fell).  ``truncated``: cut by the env's time limit
    or by the horizon H.  Either way later rewards count as 0 in g_H (ALGORITHMS section 0).
    """

    obs: np.ndarray
    acts: np.ndarray
    rew: np.ndarray
    logp: np.ndarray
    episode: int
    terminated: bool
    truncated: bool
    resumed: bool = False  # begun at an earlier theta: its gradient needs g_IS
    base: np.ndarray | None = None  # b_t from earlier trajectories; None: no baseline

    @property
    def T(self) -> int:
        """Return the number of steps taken."""
        return len(self.rew)

    @property
    def ret(self) -> float:
        """Return the undiscounted return of the trajectory."""
        return float(self.rew.sum())

    def copy(self) -> Trajectory:
        """Return a copy that owns its arrays (the sampler reuses its buffers)."""
        return Trajectory(self.obs.copy(), self.acts.copy(), self.rew.copy(), self.logp.copy(),
                          self.episode, self.terminated, self.truncated, self.resumed,
                          None if self.base is None else self.base.copy())


def episode_seeds(seed: int, worker: int, episode: int) -> tuple[int, np.random.Generator]:
    """Return (env reset seed, policy Generator) of one worker's episode."""
    # the two children of SeedSequence([seed, worker, episode]).spawn(2), built directly
    # (the same streams, a test pins it; spawn() itself costs 15 µs, these 11)
    entropy = [seed, worker, episode]
    env_ss = np.random.SeedSequence(entropy, spawn_key=(0,))
    pol_ss = np.random.SeedSequence(entropy, spawn_key=(1,))
    return int(env_ss.generate_state(1)[0]), np.random.Generator(np.random.PCG64(pol_ss))


def _after_step(done: bool, told_to_stop: bool, poll, poll_every: int, T: int) -> bool | None:
    """Return None to go on, False when the episode is complete (kept even if the round
    ended during its last step), True when it is interrupted (told to stop, or a poll at a
    multiple of ``poll_every`` steps says the round is over)."""
    if done:
        return False
    if told_to_stop:
        return True
    if poll is not None and T % poll_every == 0 and poll(T):
        return True
    return None


class _Noise:
    """One episode's policy noise, drawn from its Generator in chunks as the episode goes.

    A Generator fills an array in stream order, so drawing rows ``[0, a)`` then ``[a, b)``
    gives the same numbers as one draw of ``[0, b)`` (a test pins it): episodes that end
    early no longer pay for a whole horizon of noise (Hopper: 25 µs per episode for
    1000 x 3 normals, against episodes of about 20 steps at the first policy).
    """

    FIRST = 64  # rows in the first chunk; later chunks double

    def __init__(self, buf: np.ndarray, discrete: bool):
        self.buf = buf  # (H, width), shared by the sampler's episodes
        self.discrete = discrete  # uniforms (softmax index) or standard normals
        self.rng: np.random.Generator | None = None
        self.n = 0  # rows drawn so far

    def start(self, rng: np.random.Generator) -> None:
        """Begin an episode drawn from ``rng``."""
        self.rng, self.n = rng, 0

    def upto(self, t_end: int) -> None:
        """Make sure rows ``[0, t_end)`` are drawn."""
        if t_end <= self.n:
            return
        H = self.buf.shape[0]
        stop = min(H, max(t_end, self.n + max(self.FIRST, self.n)))
        chunk = self.buf[self.n : stop]
        if self.discrete:
            self.rng.random(out=chunk)
        else:
            self.rng.standard_normal(out=chunk)
        self.n = stop


class Sampler:
    """Runs episodes of one worker at a given theta and turns them into gradients.

    ``baseline``: None, or a baseline of ``nigt_hpc.estimator`` that gives each finished
    trajectory its ``b_t`` and then learns from it; ``add_grad`` and ``add_grad_is`` use it.
    """

    def __init__(self, env, spec: PolicySpec, horizon: int, gamma: float, seed: int,
                 worker: int, obs_dim: int, discrete: bool, baseline=None, obs_norm=None):
        self.env = env
        self.spec = spec
        self.horizon = int(horizon)
        self.gamma = float(gamma)
        self.seed = int(seed)
        self.worker = int(worker)
        self.discrete = discrete
        self.episode = 0  # index of the next episode of this worker
        H = self.horizon
        # one array for the per-step kernel's scratch and the episode's obs, actions,
        # log pi and noise (kernels.row_buffers): kernels.act_row then takes five arguments
        self._plan, self._mem, views = K.row_buffers(
            spec.sizes, spec.head, spec.squash, spec.a_center, spec.a_scale, H, obs_dim,
            1 if discrete else spec.act_dim)
        self._obs, self._acts, self._logp = views["obs"], views["acts"], views["logp"]
        self._work, self._a = views["work"], views["a"]
        self._rew = np.zeros(H)
        self._theta_al: np.ndarray | None = None  # a 64-byte-aligned copy, when needed
        self._theta_ok: np.ndarray | None = None  # the last theta found aligned
        self._no_kept = np.empty((0, 0))  # kernels.envs.rollout: no softmax terms to keep
        self._noise = _Noise(views["noise"], discrete)
        # built-in timers: seconds in env.step and in policy inference (act kernel)
        self.t_env = 0.0
        self.t_policy = 0.0
        self.steps = 0
        self.last_T = 0  # steps of the last finished trajectory (its inputs: obs[:last_T])
        # an interrupted episode kept for re-use: (steps done, last obs, noise, episode)
        self._pending: tuple | None = None
        # compiled classic-control env: dynamics and policy run in one compiled loop
        self.compiled = isinstance(env, CompiledEnv)
        self.baseline = baseline
        self._G = np.empty(H)  # G_t of the last finished trajectory (for the baseline)
        self._base = np.empty(H)  # its b_t
        # policy.obs_norm: an ObsNorm (nigt_hpc.obsnorm) turning each raw observation into
        # the policy's input, frozen during a round; engines share or update it at the
        # boundaries.  The compiled loop has none (envs.backend_of keeps it off that path).
        self.norm = obs_norm
        if obs_norm is not None and self.compiled:
            raise ValueError("policy.obs_norm needs a non-compiled env")

    def end_round(self) -> None:
        """Tell the baseline a round ended (the linear baseline refits).  Engines call it
        after the round's Allreduce, before the next round samples."""
        if self.baseline is not None:
            self.baseline.end_round()

    def state(self) -> dict[str, np.ndarray]:
        """Return the baseline's state as plain arrays (empty without a baseline)."""
        return {} if self.baseline is None else self.baseline.state()

    def restore(self, state: dict[str, np.ndarray]) -> None:
        """Set the baseline's state from ``state()``'s arrays."""
        if self.baseline is not None:
            self.baseline.restore(state)

    def _finish(self, traj: Trajectory) -> Trajectory:
        """Give a finished trajectory its ``b_t`` (from earlier trajectories), then let the
        baseline learn its ``G_t``: this order keeps ``E[g]`` unchanged."""
        T = traj.T
        G, b = self._G[:T], self._base[:T]
        K.reward_to_go(traj.rew, self.gamma, 1.0, G)
        self.baseline.observe(traj.obs, G, b)
        traj.base = b
        return traj

    def _aligned(self, theta: np.ndarray) -> np.ndarray:
        """Return ``theta``, or a copy of it on a 64-byte boundary if it is not on one
        (``kernels.aligned_empty``: split cache-line loads cost the forward pass 25%).  The
        outer steps already hand out aligned arrays; this covers the rest."""
        if theta is self._theta_ok or theta.shape[0] < 512:  # checked once per array; a
            return theta  # theta under 4 KB is not streamed from L2, so left where it is
        if K.is_aligned(theta) and theta.flags.c_contiguous:
            self._theta_ok = theta
            return theta
        if self._theta_al is None or self._theta_al.shape != theta.shape:
            self._theta_al = K.aligned_empty(theta.shape[0])
        np.copyto(self._theta_al, theta)
        return self._theta_al

    def last_inputs(self, most: int = 32) -> np.ndarray:
        """Return up to ``most`` evenly spaced policy inputs of the last finished trajectory
        (views into the buffer, valid until the next rollout)."""
        T = self.last_T
        if T <= most:
            return self._obs[:T]
        return self._obs[np.linspace(0, T - 1, most).astype(np.int64)]

    @property
    def has_pending(self) -> bool:
        """Return whether an interrupted episode waits to be resumed."""
        return self._pending is not None

    def drop_pending(self) -> None:
        """Forget an interrupted episode (its index stays consumed)."""
        self._pending = None

    def rollout(self, theta: np.ndarray, poll: Callable[[int], bool] | None = None,
                poll_every: int = 64, on_step: Callable[[], bool] | None = None,
                keep: bool = False) -> Trajectory | None:
        """Return one trajectory at ``theta``, or None if it was interrupted.

        ``poll(steps_so_far)`` is called every ``poll_every`` env steps and ``on_step()``
        after every env step (emulated compute delay); either returning True interrupts.
        An interrupted episode is dropped (its index stays consumed, so seeds never depend
        on when a round ended), or with ``keep`` saved and resumed by the next call, whose
        steps are then sampled at that call's ``theta``.  Each step's behaviour
        ``log pi`` is stored, so such a mixed trajectory is exact input for ``g_IS``.
        """
        theta = self._aligned(theta)
        if self.compiled:
            traj = self._rollout_compiled(theta, poll, poll_every, on_step, keep)
        else:
            traj = self._rollout_env(theta, poll, poll_every, on_step, keep)
        if traj is None or self.baseline is None:
            return traj
        return self._finish(traj)

    def _rollout_env(self, theta, poll, poll_every, on_step, keep):
        """``rollout`` for a gymnasium (or direct MuJoCo) env: one Python call per step."""
        if self._pending is not None:
            T, s, noise, episode = self._pending
            self._pending = None
            resumed = True
        else:
            s, noise, episode = self._begin()
            T = 0
            resumed = False
        obs, acts, rew, logp, a = self._obs, self._acts, self._rew, self._logp, self._a
        plan, mem = self._plan, self._mem
        terminated = truncated = False
        clock = time.perf_counter
        t_env = t_pol = 0.0
        step = self.env.step
        act = K.act_row
        T0 = T
        interrupted = False
        # an env that returns lists (gymnasium only warns) gets them made arrays; checked on
        # the episode's first observation, not per step
        coerce = not isinstance(s, np.ndarray)
        norm = self.norm.step if self.norm is not None else None
        try:
            # two clock reads per step: policy + bookkeeping, then env.step
            t_prev = clock()
            for t in range(T0, self.horizon):
                if t >= noise.n:
                    noise.upto(t + 1)
                if coerce:
                    s = np.asarray(s, dtype=np.float64)
                if norm is not None:  # raw s into the round's moments; obs[t] = its input
                    act(theta, plan, mem, norm(s), t)
                else:
                    act(theta, plan, mem, s, t)  # obs[t] = s; acts[t], logp[t], a from noise[t]
                action = int(a[0]) if self.discrete else a.copy()
                t1 = clock()
                s, r, terminated, truncated, _ = step(action)
                t2 = clock()
                t_pol += t1 - t_prev
                t_env += t2 - t1
                t_prev = t2
                rew[t] = r
                T = t + 1
                done = terminated or truncated
                if on_step is None:
                    if not done and (poll is None or T % poll_every):
                        continue  # the common step, decided without a call
                    told_to_stop = False
                else:  # emulated compute: timed apart, as "delay"
                    told_to_stop = on_step()
                    t_prev = clock()
                verdict = _after_step(done, told_to_stop, poll, poll_every, T)
                if verdict is not None:
                    interrupted = verdict
                    break
        finally:
            self.t_env += t_env
            self.t_policy += t_pol
            self.steps += T - T0
        if interrupted:
            if keep:
                self._pending = (T, s, noise, episode)
            return None
        truncated = not terminated  # the env's time limit or our horizon H cut it
        self.last_T = T
        return Trajectory(obs[:T], acts[:T], rew[:T], logp[:T], episode, bool(terminated),
                          truncated, resumed)

    def _begin(self):
        """Start the next episode; return (first obs, its noise, episode index)."""
        env_seed, rng = episode_seeds(self.seed, self.worker, self.episode)
        episode = self.episode
        self.episode += 1
        t_r = time.perf_counter()
        s, _ = self.env.reset(seed=env_seed)
        self.t_env += time.perf_counter() - t_r  # reset is environment time too
        # the policy noise comes from the episode's Generator in vectorised chunks (a
        # Generator crossing into numba costs more than the step itself, kernels.act_noise)
        self._noise.start(rng)
        return s, self._noise, episode

    def _rollout_compiled(self, theta, poll, poll_every, on_step, keep):
        """``rollout`` for a CompiledEnv: the same episodes, seeds, polls and results.

        The compiled loop runs up to the next poll point (every ``poll_every`` steps), or
        one step at a time when an emulated per-step delay must be called after each step.
        Policy inference is inside that loop, so its time counts as env time here.
        """
        env, spec = self.env, self.spec
        obs, acts, rew, logp = self._obs, self._acts, self._rew, self._logp
        if self._pending is not None:
            T, state, noise, episode = self._pending
            self._pending = None
            env.state[:] = state
            resumed = True
        else:
            s, noise, episode = self._begin()
            obs[0] = s
            T = 0
            resumed = False
        T0 = T
        limit = min(self.horizon, env.max_episode_steps)  # TimeLimit or horizon H
        # compiled steps between calls back into Python: every step when a delay must be
        # called after each, else up to the next poll point, else 256 steps (so an episode
        # that ends early has not drawn a whole horizon of noise; a call costs about 1 µs)
        if on_step is not None:
            stride = 1
        elif poll is not None:
            stride = max(1, int(poll_every))
        else:
            stride = min(limit, 256)
        terminated = interrupted = False
        clock = time.perf_counter
        t_env = 0.0
        try:
            while T < limit:
                t_stop = min(limit, (T // stride + 1) * stride)
                noise.upto(t_stop)
                t0 = clock()
                T, terminated = KE.rollout(env.kind, env.state, env.params, T, t_stop, theta,
                                           spec.sizes, spec.head, noise.buf, spec.a_center,
                                           spec.a_scale, spec.squash, self._work, obs, acts,
                                           rew, logp, self._a, self._no_kept)
                t_env += clock() - t0
                told_to_stop = False
                if on_step is not None:
                    told_to_stop = on_step()
                verdict = _after_step(terminated or T >= limit, told_to_stop, poll, poll_every, T)
                if verdict is not None:
                    interrupted = verdict
                    break
        finally:
            self.t_env += t_env
            self.steps += T - T0
        if interrupted:
            if keep:
                self._pending = (T, env.state.copy(), noise, episode)
            return None
        self.last_T = T
        return Trajectory(obs[:T], acts[:T], rew[:T], logp[:T], episode, bool(terminated),
                          not terminated, resumed)

    def add_grad(self, theta: np.ndarray, traj: Trajectory, weight: float,
                 out: np.ndarray) -> None:
        """Add ``weight * g_H(traj, theta)`` to ``out`` (trajectory sampled at ``theta``).

        Long trajectories of large policies go through the matrix-form kernels
        (``kernels.batched``), the rest through the per-step ones; the choice depends only
        on (T, d), so it is the same on every rank and every rerun.
        """
        spec = self.spec
        kern = KB if KB.use_batched(traj.T, len(theta)) else K
        if kern is K:
            theta = self._aligned(theta)
        if traj.base is None:  # no baseline: the estimator of the paper, unchanged
            kern.grad_gpomdp(theta, spec.sizes, spec.head, traj.obs, traj.acts, traj.rew,
                             self.gamma, float(weight), out)
        else:
            kern.grad_gpomdp_baseline(theta, spec.sizes, spec.head, traj.obs, traj.acts,
                                      traj.rew, traj.base, self.gamma, float(weight), out)

    def add_grad_is(self, theta: np.ndarray, traj: Trajectory, clip: float, weight: float,
                    out: np.ndarray) -> None:
        """Add ``weight * g_IS(traj; theta, beta)``, beta the theta it was sampled at (with
        the trajectory's baseline, ``kernels.is_coefficients_baseline``)."""
        spec = self.spec
        kern = KB if KB.use_batched(traj.T, len(theta)) else K
        if kern is K:
            theta = self._aligned(theta)
        if traj.base is None:
            kern.grad_is(theta, spec.sizes, spec.head, traj.obs, traj.acts, traj.rew,
                         traj.logp, self.gamma, float(clip), float(weight), out)
        else:
            kern.grad_is_baseline(theta, spec.sizes, spec.head, traj.obs, traj.acts, traj.rew,
                                  traj.logp, traj.base, self.gamma, float(clip), float(weight),
                                  out)


def make_sampler(cfg: dict, env, spec: PolicySpec, info: dict, worker: int) -> Sampler:
    """Return worker ``worker``'s Sampler on ``env`` for config ``cfg`` (``env.horizon``,
    ``env.gamma``, ``run.seed`` and the ``[estimator]`` table)."""
    H = cfg["env"]["horizon"]
    return Sampler(env, spec, H, cfg["env"]["gamma"], cfg["run"]["seed"], worker,
                   info["obs_dim"], info["discrete"],
                   baseline=make_baseline(cfg["estimator"], H, info["obs_dim"]),
                   obs_norm=make_obsnorm(cfg, info["obs_dim"]))
