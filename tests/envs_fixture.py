"""A tiny user environment, loaded through the "module:Env-v0" form of env.id."""

import gymnasium as gym
import numpy as np


class Chain(gym.Env):
    """Walk right on a line; reward 1 per step right; ends at position 5."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(-10.0, 10.0, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.x = 0

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.x = 0
        return np.array([self.x], dtype=np.float32), {}

    def step(self, action):
        self.x += 1 if action == 1 else -1
        r = 1.0 if action == 1 else 0.0
        return np.array([self.x], dtype=np.float32), r, self.x >= 5, False, {}


gym.register("NigtChain-v0", entry_point=Chain, max_episode_steps=50)


class Exploding(Chain):
    """Raises inside ``step`` after ``explode_at`` steps (0 = never): a user's env bug."""

    def __init__(self, explode_at=0):
        super().__init__()
        self.explode_at = explode_at
        self.n = 0

    def step(self, action):
        self.n += 1
        if self.explode_at and self.n >= self.explode_at:
            raise RuntimeError("boom from the environment")
        return super().step(action)


class NanReward(Chain):
    """Returns a NaN reward in every ``nan_every``-th episode (1 = always)."""

    def __init__(self, nan_every=1):
        super().__init__()
        self.nan_every = nan_every
        self.episode = 0

    def reset(self, seed=None, options=None):
        self.episode += 1
        return super().reset(seed=seed)

    def step(self, action):
        obs, r, term, trunc, info = super().step(action)
        if self.episode % self.nan_every == 0:
            r = float("nan")
        return obs, r, term, trunc, info


gym.register("NigtExploding-v0", entry_point=Exploding, max_episode_steps=50)
gym.register("NigtNanReward-v0", entry_point=NanReward, max_episode_steps=50)


class ListChain(Chain):
    """``Chain`` returning observations as Python lists (gymnasium only warns about it)."""

    def reset(self, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        return obs.tolist(), info

    def step(self, action):
        obs, r, term, trunc, info = super().step(action)
        return obs.tolist(), r, term, trunc, info


gym.register("NigtListChain-v0", entry_point=ListChain, max_episode_steps=50)


class Faulty(Chain):
    """Misbehaves inside ``step`` once ``at`` steps have been taken (0 = never), as ``how``
    says: ``hang`` (sleeps for ever, in Python), ``spin`` (a busy loop), ``exit0``
    (``os._exit(0)``), ``sysexit`` (``raise SystemExit(0)``), ``kbint`` (raises
    KeyboardInterrupt), ``stop`` (sends itself SIGSTOP), ``slow`` (sleeps ``slow_s`` per step).
    With ``marker``, that file is created when the fault begins (tests wait for it).
    """

    def __init__(self, at=0, how="hang", slow_s=0.01, marker=""):
        super().__init__()
        self.at, self.how, self.slow_s, self.marker = at, how, slow_s, marker
        self.n = 0

    def step(self, action):
        import os
        import signal
        import time

        self.n += 1
        if self.how == "slow":
            time.sleep(self.slow_s)
        elif self.at and self.n >= self.at:
            if self.marker:
                open(self.marker, "w").close()
            if self.how == "hang":
                while True:
                    time.sleep(3600)
            if self.how == "spin":
                while True:
                    pass
            if self.how == "exit0":
                os._exit(0)
            if self.how == "sysexit":
                raise SystemExit(0)
            if self.how == "kbint":
                raise KeyboardInterrupt
            if self.how == "stop":
                os.kill(os.getpid(), signal.SIGSTOP)
        return super().step(action)


gym.register("NigtFaulty-v0", entry_point=Faulty, max_episode_steps=50)


class DictChain(Chain):
    """``Chain`` with a Dict observation (position and a constant goal): needs a wrapper."""

    def __init__(self):
        super().__init__()
        box = gym.spaces.Box(-10.0, 10.0, shape=(1,), dtype=np.float32)
        self.observation_space = gym.spaces.Dict({"pos": box, "goal": box})

    def _dict(self, obs):
        return {"pos": obs, "goal": np.array([5.0], dtype=np.float32)}

    def reset(self, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        return self._dict(obs), info

    def step(self, action):
        obs, r, term, trunc, info = super().step(action)
        return self._dict(obs), r, term, trunc, info


gym.register("NigtDictChain-v0", entry_point=DictChain, max_episode_steps=50)
