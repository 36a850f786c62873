"""A user environment with a Dict observation, registered for ``env.id =
"examples.goal_chain:GoalChain-v0"``.

nigt_hpc imports the module before the part after the colon is made, so the
``gym.register`` call below runs first.  Policies take a flat Box, so the config that trains
it (``examples/goal_chain.toml``) flattens the Dict with gymnasium's FlattenObservation.
"""

import gymnasium as gym
import numpy as np

SIZE = 10


class GoalChain(gym.Env):
    """Walk along positions 0..SIZE to a goal drawn at reset; observation {"pos", "goal"}.

    Reward 1 on reaching the goal (the episode ends), -0.05 for every other step, so a
    policy must read both entries of the observation (step towards ``goal - pos``).
    """

    metadata = {"render_modes": []}

    def __init__(self):
        box = gym.spaces.Box(0.0, float(SIZE), shape=(1,), dtype=np.float32)
        self.observation_space = gym.spaces.Dict({"pos": box, "goal": box})
        self.action_space = gym.spaces.Discrete(2)  # 0: left, 1: right
        self.pos = self.goal = 0

    def _obs(self):
        return {"pos": np.array([self.pos], dtype=np.float32),
                "goal": np.array([self.goal], dtype=np.float32)}

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.pos, self.goal = (int(x) for x in self.np_random.choice(SIZE + 1, 2, replace=False))
        return self._obs(), {}

    def step(self, action):
        self.pos = min(SIZE, max(0, self.pos + (1 if int(action) == 1 else -1)))
        done = self.pos == self.goal
        return self._obs(), 1.0 if done else -0.05, done, False, {}


gym.register("GoalChain-v0", entry_point=GoalChain, max_episode_steps=4 * SIZE)
