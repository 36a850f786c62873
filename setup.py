"""Install nigt_hpc.

The repository keeps the compiled kernels in a top-level ``kernels/`` folder (the layout
users asked for); ``package_dir`` maps it to the import name ``nigt_hpc.kernels`` so no
package called ``kernels`` lands in site-packages.
"""

from setuptools import setup

setup(
    name="nigt_hpc",
    version="0.3.1",
    description=(
        "Distributed policy-gradient RL on CPU clusters: Rennala/Malenia NIGT over MPI "
        "with numba kernels (Tyurin, Spiridonov, Rudenko, ICLR 2026)"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=["nigt_hpc", "nigt_hpc.bench", "nigt_hpc.engine", "nigt_hpc.envs", "nigt_hpc.kernels"],
    package_dir={"nigt_hpc.kernels": "kernels"},
    install_requires=[
        "numpy>=1.24",
        "numba>=0.59",
        "mpi4py>=4.0",
        "gymnasium>=1.0,<2",
        "tomli>=2.0; python_version<'3.11'",
    ],
    extras_require={
        # The MPICH wheel: a self-contained MPI for laptops and CI. On a cluster, leave it
        # out and mpi4py loads the system MPI (see README, "On a cluster").
        "mpich": ["mpich"],
        # MuJoCo is pinned: physics differs between versions (PITFALLS G5), and 4.0.0 is the
        # version our tests and benchmark figures were taken with.
        "mujoco": ["gymnasium[mujoco]>=1.0,<2", "mujoco==4.0.0"],
        "plot": ["matplotlib>=3.6"],
        # jobs/compare_sb3.py: Stable-Baselines3 PPO side by side.  Install a CPU build of
        # torch first where pip would otherwise fetch a CUDA one (README, "Compare with SB3").
        "compare": ["torch>=2.2", "stable-baselines3>=2.3", "matplotlib>=3.6"],
        # `nigt-hpc eval --video`: gymnasium's RecordVideo writes MP4s with moviepy (whose
        # imageio-ffmpeg ships a ~170 MB ffmpeg binary); classic control draws its frames
        # with pygame.  MuJoCo also needs a system libEGL or libOSMesa.
        "video": ["moviepy>=1.0", "gymnasium[classic-control]>=1.0,<2"],
        # examples/minigrid.toml (minigrid pulls pygame-ce, ~20 MB)
        "examples": ["minigrid>=2.3"],
        # run.log = ["tensorboard"]: pure Python (with protobuf), no TensorFlow or torch
        "tensorboard": ["tensorboardX>=2.6"],
        # the video, MiniGrid and TensorBoard tests run in CI too, so "test" carries those
        # extras' packages as well
        "test": ["pytest>=7", "pytest-mpi>=0.6", "pytest-timeout>=2.1", "matplotlib>=3.6",
                 "moviepy>=1.0", "gymnasium[classic-control]>=1.0,<2", "minigrid>=2.3",
                 "tensorboardX>=2.6"],
    },
    entry_points={"console_scripts": ["nigt-hpc=nigt_hpc.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Environment :: Console",
    ],
)
