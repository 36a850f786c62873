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
