"""Videos of evaluation episodes (``nigt-hpc eval --video DIR``): a headless GL backend for
MuJoCo, checks that fail before anything is written, and gymnasium's RecordVideo.

MuJoCo picks its OpenGL backend once, from ``MUJOCO_GL``, at the first ``import mujoco``;
PyOpenGL picks its platform from ``PYOPENGL_PLATFORM`` at its first import.  Neither can be
changed afterwards in the same process, so :func:`select_gl` must run before anything
imports mujoco (nigt_hpc itself imports it only when a MuJoCo env is made).  Without
``MUJOCO_GL`` the default is GLFW, which needs a display: on a cluster node or in CI there
is none, so ``egl`` (Mesa's or a GPU driver's libEGL) is tried, then ``osmesa`` (software,
Debian's ``libosmesa6``), each in a throwaway subprocess so that a backend that fails does
not poison this one.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import warnings

from .config import ConfigError

VIDEO_HINT = "pip install 'nigt_hpc[video]'"
GL_HINT = ("MuJoCo renders headless with EGL (Debian: apt-get install libegl1 libgl1-mesa-dri) "
           "or OSMesa (apt-get install libosmesa6); set MUJOCO_GL=egl or osmesa")
BACKENDS = ("egl", "osmesa")
# Makes and frees a 16x16 offscreen context: exactly what rendering a frame needs first.
_PROBE = "import mujoco; c = mujoco.GLContext(16, 16); c.make_current(); c.free()"


def _probe(backend: str, platform: str | None = None) -> str | None:
    """Return None if MuJoCo can open a ``backend`` context here, else the reason why not
    (``platform``: the PYOPENGL_PLATFORM to try it with; None keeps this process's)."""
    env = {**os.environ, "MUJOCO_GL": backend}
    if platform is not None:
        env["PYOPENGL_PLATFORM"] = platform
    try:
        out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                             text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return type(e).__name__
    if out.returncode == 0:
        return None
    lines = [x for x in out.stderr.strip().splitlines() if x.strip()]
    return lines[-1] if lines else f"exit status {out.returncode}"


def _needs_mujoco(env_id: str) -> bool:
    """Return whether ``env_id`` may render through MuJoCo (unknown ids: yes, to be safe)."""
    if importlib.util.find_spec("mujoco") is None:
        return False
    import gymnasium as gym

    spec = gym.envs.registry.get(env_id)
    if spec is None or not isinstance(spec.entry_point, str):
        return True  # a module:Env id, or a callable entry point: its module may use MuJoCo
    return "mujoco" in spec.entry_point


def select_gl(env_id: str) -> str | None:
    """Set ``MUJOCO_GL`` (and ``PYOPENGL_PLATFORM``) for headless rendering; return the
    backend in force (None where MuJoCo plays no part).

    A ``MUJOCO_GL`` the user set is kept, once it is seen to open a context (a typo or a
    glfw without a display is one line here rather than a traceback later).  Otherwise the
    first of egl and osmesa that opens a context wins; ConfigError if neither does.
    """
    chosen = os.environ.get("MUJOCO_GL", "").strip().lower()
    if not _needs_mujoco(env_id):
        return chosen or None
    if "mujoco" in sys.modules:  # too late to choose: mujoco already picked its backend
        return chosen or None
    if chosen:
        if chosen in BACKENDS:
            os.environ.setdefault("PYOPENGL_PLATFORM", chosen)
        why = _probe(chosen)
        if why is not None:
            raise ConfigError(f"--video: MUJOCO_GL={chosen} cannot open an OpenGL context "
                              f"here ({why}); unset it to let eval choose; {GL_HINT}")
        return chosen
    why = {}
    for backend in BACKENDS:
        why[backend] = _probe(backend, platform=backend)
        if why[backend] is None:
            os.environ["MUJOCO_GL"] = backend
            os.environ["PYOPENGL_PLATFORM"] = backend
            return backend
    raise ConfigError(f"--video: {env_id!r} renders with MuJoCo, and no headless OpenGL works "
                      f"here (egl: {why['egl']}; osmesa: {why['osmesa']}); {GL_HINT}")


def prefix(env_id: str, worker: int) -> str:
    """Return the file-name prefix of worker ``worker``'s videos (``-episode-K.mp4`` follows)."""
    return f"{env_id.replace(':', '_').replace('/', '_')}-worker-{worker}"


def check_extra() -> None:
    """Raise ConfigError if the package RecordVideo writes MP4s with is missing."""
    if importlib.util.find_spec("moviepy") is None:
        raise ConfigError(f"--video needs moviepy to write MP4 files: {VIDEO_HINT}")


def check_dir(path: str) -> None:
    """Raise ConfigError unless ``path`` is, or can be made as, a writable folder; create
    nothing."""
    from . import rundir

    rundir.check_path(path, "--video")
    p = os.path.abspath(path)
    while not os.path.exists(p):
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    if not os.path.isdir(p):
        raise ConfigError(f"--video {path!r}: {p!r} is not a directory")
    if not os.access(p, os.W_OK | os.X_OK):
        raise ConfigError(f"--video {path!r}: {p!r} is not writable")


def check_renders(env, env_id: str) -> None:
    """Raise ConfigError unless ``env`` gives rgb_array frames (resets it once to see)."""
    import gymnasium as gym

    # pygame (classic control) initialises SDL's audio and video at its first render: with no
    # sound card or display it prints an "error: XDG_RUNTIME_DIR ..." line, which reads like
    # ours.  Offscreen frames need neither.
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

    from .envs import NegateObs

    inner = env.env if isinstance(env, NegateObs) else env  # the adapter draws nothing itself
    try:
        with warnings.catch_warnings():  # GLFW and friends warn before they fail
            warnings.simplefilter("ignore")
            env.reset(seed=0)
            frame = inner.render()
    except gym.error.DependencyNotInstalled as e:
        raise ConfigError(f"--video: {env_id!r} cannot render: {str(e).splitlines()[0]}") \
            from None
    except Exception as e:  # noqa: BLE001 - GL and pygame failures come as many types
        hint = f"; {GL_HINT}" if "gl" in f"{type(e).__name__} {e}".lower() else ""
        raise ConfigError(f"--video: {env_id!r} cannot render rgb_array frames "
                          f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
                          f"{hint}") from None
    shape = getattr(frame, "shape", None)
    if shape is None or len(shape) != 3 or shape[2] not in (3, 4):
        raise ConfigError(f"--video: {env_id!r} does not render images in rgb_array mode "
                          f"(render() gave {type(frame).__name__}"
                          f"{'' if shape is None else ' of shape ' + str(shape)})")


def record(env, folder: str, prefix: str):
    """Return ``env`` recording every episode into ``folder/PREFIX-episode-K.mp4``.

    RecordVideo needs a gymnasium Env; the negate_obs adapter is not one, so the recorder
    goes inside it (the frames are the same: negation changes observations only).
    """
    from gymnasium.wrappers import RecordVideo

    from .envs import NegateObs

    def wrap(inner):
        with warnings.catch_warnings():  # "Overwriting existing videos": DIR may exist
            warnings.simplefilter("ignore")
            try:  # it makes the folder: where check_dir's access test could not tell
                return RecordVideo(inner, folder, episode_trigger=lambda _: True,
                                   name_prefix=prefix, disable_logger=True)
            except OSError as e:
                raise ConfigError(f"--video {folder!r}: cannot create it ({e.strerror})") \
                    from None

    if isinstance(env, NegateObs):
        env.env = wrap(env.env)
        return env
    return wrap(env)
