"""Connecting to Ray: a local Ray, or a cluster (with token authentication), and one clear error when it fails.

Where a run goes: ``ray.address`` in the config (or ``run.py --address``), else ``RAY_ADDRESS`` (as Ray itself
reads it), else a local Ray started for the run. A cluster started with ``RAY_AUTH_MODE=token`` accepts only
clients that send its token; Ray reads the token from ``RAY_AUTH_TOKEN``, the file ``RAY_AUTH_TOKEN_PATH`` or
``~/.ray/auth_token``, but sends it only when ``RAY_AUTH_MODE=token`` is set in the client too (see
https://docs.ray.io/en/latest/ray-security/token-auth.html). :func:`token_auth_env` sets it where a token is at
hand and nothing says otherwise, so ``hwnas run`` and ``experiments/run.py`` connect with only the token file
present (as ``cluster.yaml`` mounts it). This module imports nothing of Ray at import time: ``run.py`` calls
:func:`token_auth_env` before anything imports Ray.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import sys
from collections.abc import Callable, MutableMapping
from typing import Any

from orchestrator.errors import HwnasError

log = logging.getLogger(__name__)

TOKEN_FILE = "~/.ray/auth_token"
_AUTH_MARKS = ("InvalidAuthToken", "Unauthenticated", "token is missing or incorrect", "AuthenticationError")


class RayConnectError(HwnasError, ConnectionError):
    """Ray could not be reached or refused this client (no token, a wrong one, no cluster at the address); the
    message names the address and the fix."""


def ray_cause(error: BaseException) -> BaseException:
    """The exception a Ray task or actor raised, without Ray's wrapping (a ``RayTaskError`` holds it as
    ``cause``, possibly nested); ``error`` itself where it wraps nothing."""
    while isinstance(getattr(error, "cause", None), BaseException) and error.cause is not error:  # type: ignore[attr-defined]
        error = error.cause  # type: ignore[attr-defined]
    return error


def token_auth_env(environ: MutableMapping[str, str] = os.environ) -> bool:  # type: ignore[assignment]
    """Turn token authentication on (``RAY_AUTH_MODE=token`` in ``environ``) when a token is at hand
    (``RAY_AUTH_TOKEN``, the file ``RAY_AUTH_TOKEN_PATH``, or ``~/.ray/auth_token``) and ``RAY_AUTH_MODE`` is
    not set (an explicit choice stands); True if it did."""
    if "RAY_AUTH_MODE" in environ or _token_source(environ) is None:
        return False
    environ["RAY_AUTH_MODE"] = "token"
    return True


def cluster_address(configured: str | None, environ: MutableMapping[str, str] = os.environ) -> str | None:  # type: ignore[assignment]
    """The cluster a run connects to: ``configured`` (the config's ``ray.address``), else ``RAY_ADDRESS``, else
    None (a local Ray)."""
    return configured or environ.get("RAY_ADDRESS") or None


def _refresh_ray_config() -> None:
    """Make an already imported Ray see a changed ``RAY_AUTH_MODE`` (Ray reads it into its config at import;
    this is what Ray's own ``ray start`` does when it turns token authentication on)."""
    if "ray._raylet" not in sys.modules:
        return  # Ray reads the environment when it is imported
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def _token_source(environ: MutableMapping[str, str]) -> str | None:
    """Where this client's token comes from, or None when there is none to send."""
    if environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    path = environ.get("RAY_AUTH_TOKEN_PATH")
    if path:
        return f"RAY_AUTH_TOKEN_PATH ({path})" if os.path.isfile(path) else None
    return TOKEN_FILE if os.path.isfile(os.path.expanduser(TOKEN_FILE)) else None


def check_token_file(environ: MutableMapping[str, str]) -> None:
    """A token file Ray would abort on (C++ fatal error, no Python exception): refused first, with its name."""
    if environ.get("RAY_AUTH_MODE", "").lower() != "token" or environ.get("RAY_AUTH_TOKEN"):
        return
    path = environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser(TOKEN_FILE)
    named = "RAY_AUTH_TOKEN_PATH" in environ
    try:
        empty = os.path.isfile(path) and not open(path).read().strip()  # noqa: SIM115 - read once
    except OSError as e:
        raise RayConnectError(f"cannot read the Ray token file {path} ({e.strerror or e}): make it readable, or "
                              f"set RAY_AUTH_TOKEN") from None
    if empty or (named and not os.path.isfile(path)):
        raise RayConnectError(f"the Ray token file {path} (RAY_AUTH_TOKEN_PATH) is {'empty' if empty else 'missing'}:"
                              f" put the cluster's token there (`ray get-auth-token` on its head node prints it)")


def _is_auth_failure(exc: BaseException) -> bool:
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if type(e).__name__ == "AuthenticationError" or any(m in str(e) for m in _AUTH_MARKS):
            return True
        e = e.__cause__ or e.__context__
    return False


def connect_error(address: str, exc: BaseException, environ: MutableMapping[str, str] = os.environ) -> RayConnectError:  # type: ignore[assignment]
    """``exc`` (raised by ``ray.init(address=address)``) as one line naming the address and the fix."""
    fix_token = (f"copy the cluster's token (`ray get-auth-token` on its head node prints it) to {TOKEN_FILE} on "
                 f"this machine, or set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH")
    if _is_auth_failure(exc):
        mode = environ.get("RAY_AUTH_MODE", "").lower()
        source = _token_source(environ)
        if mode and mode != "token":
            return RayConnectError(f"the Ray cluster at {address} needs a token and RAY_AUTH_MODE={mode} is set "
                                   f"here: unset it (a token at {TOKEN_FILE} then turns token authentication on), "
                                   f"or set RAY_AUTH_MODE=token")
        if source is None:
            return RayConnectError(f"the Ray cluster at {address} needs a token and this machine has none: "
                                   f"{fix_token}")
        return RayConnectError(f"the Ray cluster at {address} refused the token from {source} (not the cluster's):"
                               f" {fix_token}")
    lines = str(exc).strip().splitlines()
    why = f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__
    return RayConnectError(f"cannot connect to the Ray cluster at {address} ({why}): check that it runs "
                           f"(`ray status --address {address}`) and the address (ray.address in the config, "
                           f"RAY_ADDRESS, or --address); unset both for a local Ray")


def connect(address: str | None, num_cpus: int | None = None, **init: Any) -> None:
    """Connect this process to Ray, once: to the cluster at ``address`` (``"auto"``: the one this node is in),
    with token authentication when a token is at hand; or, with ``address`` None, start a local Ray of
    ``num_cpus`` CPUs (None: all). ``init``: further ``ray.init`` arguments (e.g. ``log_to_driver``).

    Raises :class:`RayConnectError` (one line: the address and the fix) when the cluster cannot be reached or
    refuses this client's token (missing or wrong)."""
    import ray

    if ray.is_initialized():
        return
    if address is None:
        _init_local(ray, num_cpus, init)
        return
    if num_cpus is not None:
        log.warning("ray.num_cpus (%d) applies to a local Ray only; the cluster at %s offers its own CPUs", num_cpus,
                    address)
    if token_auth_env():
        _refresh_ray_config()
    check_token_file(os.environ)
    try:
        ray.init(address=address, configure_logging=False, **init)
    except Exception as e:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, AuthenticationError, ...
        raise connect_error(address, e) from None


# A local Ray binds its servers (GCS, raylet, workers, agents) to the node's IP; Ray 2.60 takes the machine's
# address for it (and turns a given "127.0.0.1" into that address) unless RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER is off,
# when it takes loopback (ray._private.services.get_node_ip_address). Ray turns token authentication on for a new
# local Ray unless RAY_AUTH_MODE is set (and writes ~/.ray/auth_token when there is none).
_LOCAL_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def _init_local(ray: Any, num_cpus: int | None, init: dict[str, Any]) -> None:
    """Start a local Ray bound to loopback only, with token authentication only if ``RAY_AUTH_MODE=token`` asks
    for it; the environment is restored afterwards (Ray's processes keep what they started with)."""
    from ray._private import ray_constants

    env = dict(_LOCAL_ENV)
    if "RAY_AUTH_MODE" not in os.environ:
        env["RAY_AUTH_MODE"] = "disabled"
    saved = {k: os.environ.get(k) for k in env}
    saved_cluster = ray_constants.ENABLE_RAY_CLUSTER
    os.environ.update(env)
    ray_constants.ENABLE_RAY_CLUSTER = False  # read at import: set for this process too
    _refresh_ray_config()
    restore_params = _any_agent_port()
    try:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, configure_logging=False, **init)
    finally:
        restore_params()
        ray_constants.ENABLE_RAY_CLUSTER = saved_cluster
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _any_agent_port() -> Callable[[], None]:
    """Let the local Ray's dashboard agent take any free port for its HTTP server (not Ray's fixed default,
    52365), until the returned function is called; ``ray.init`` has no argument for it.

    Why: a second Ray on the machine (two runs at once, a test's subprocess run beside the test's own Ray) finds
    52365 taken, and its agent retries the bind with back-off for 3.4 s before it gives up on HTTP, while the
    raylet waits for it (measured: a new local Ray ready in 7-8 s instead of 12-14 s, docs/benchmarks.md, turn
    15). A Ray without the parameter is left as it is."""
    from ray._private import parameter

    original = parameter.RayParams.__init__
    if "dashboard_agent_listen_port" not in inspect.signature(original).parameters:
        return lambda: None

    @functools.wraps(original)
    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("dashboard_agent_listen_port", 0)  # 0: a free port, which the agent reports to the GCS
        original(self, *args, **kwargs)

    parameter.RayParams.__init__ = init  # type: ignore[method-assign]

    def restore() -> None:
        parameter.RayParams.__init__ = original  # type: ignore[method-assign]

    return restore
