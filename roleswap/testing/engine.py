"""Is there a Docker engine with the roleswap images?  (Asked by ``backend="auto"``.)

Everything Docker-related is imported lazily: ``import roleswap.testing`` works without
testcontainers (and its ``docker`` dependency); only the docker backend needs them, and
then says how to install them.  The engine is the one ``DOCKER_HOST`` names (or the
default socket), asked with a bounded timeout so ``auto`` never hangs on a dead engine.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from intermission.protocol import mask_url
from roleswap.testing.cluster import ClusterError

REDIS_IMAGE = "roleswap/redis:latest"
PING_TIMEOUT = 2.0  # seconds: a live engine answers in milliseconds
INSTALL_HINT = "pip install 'roleswap[testing]'"
BUILD_HINT = "build them with `docker/build` in a roleswap checkout"


def server_image(flavor: str) -> str:
    """The image of one server flavor (the contract is in roleswap.testing.containers)."""
    return f"roleswap/server:{flavor}"


def images_for(flavor: str) -> list[str]:
    """Every image a cluster of ``flavor`` needs, as testcontainers will ask for them."""
    return [image_prefix() + image for image in (server_image(flavor), REDIS_IMAGE)]


def import_testcontainers() -> ModuleType:
    """``testcontainers.core.container``, or ClusterError with the install command."""
    try:
        return importlib.import_module("testcontainers.core.container")
    except ImportError as e:
        raise ClusterError(f"the docker backend needs testcontainers, which cannot be imported ({e})",
                           remedy=INSTALL_HINT) from None


def image_prefix() -> str:
    """testcontainers' ``TESTCONTAINERS_HUB_IMAGE_NAME_PREFIX`` (it prepends it to every
    image it starts, so the check must look for the same names); '' without it."""
    try:
        from testcontainers.core.config import testcontainers_config
    except ImportError:
        return ""
    return str(getattr(testcontainers_config, "hub_image_name_prefix", "") or "")


def docker_client(timeout: float = PING_TIMEOUT) -> Any:
    """A ``docker.DockerClient`` whose engine answered a ping within ``timeout`` s.

    ClusterError when docker-py is missing or no engine answers at ``DOCKER_HOST``.
    """
    try:
        docker = importlib.import_module("docker")
    except ImportError:
        raise ClusterError("the docker backend needs the docker package (a testcontainers "
                           "dependency), which is not installed", remedy=INSTALL_HINT) from None
    try:
        client = docker.from_env(timeout=timeout)  # asks the engine's API version: a first ping
        client.ping()
    except Exception as e:  # docker-py wraps transport errors in several types
        raise ClusterError(f"no Docker engine answers ({_where()}): {_short(e)}",
                           remedy="start Docker, or point DOCKER_HOST at a running engine, "
                                  "or use the process backend") from None
    return client


def missing_images(client: Any, images: list[str]) -> list[str]:
    """The ``images`` the engine does not have locally (they are never pulled)."""
    errors = importlib.import_module("docker.errors")
    missing = []
    for image in images:
        try:
            client.images.get(image)
        except errors.ImageNotFound:
            missing.append(image)
    return missing


def require_images(client: Any, flavor: str) -> None:
    """ClusterError naming every image of ``flavor`` the engine lacks, and how to build it."""
    missing = missing_images(client, images_for(flavor))
    if missing:
        raise ClusterError(f"the Docker engine ({_where()}) lacks the image(s) {', '.join(missing)}",
                           remedy=BUILD_HINT)


@dataclass(frozen=True)
class Probe:
    """What ``backend="auto"`` found: ``usable`` and, either way, why."""

    usable: bool
    reason: str


def probe(flavor: str) -> Probe:
    """Whether the docker backend can run ``flavor`` here; never raises."""
    try:
        import_testcontainers()
        client = docker_client()
        try:
            missing = missing_images(client, images_for(flavor))
        finally:
            client.close()
    except ClusterError as e:
        return Probe(False, e.message)
    except Exception as e:  # an engine that answers ping but fails the image query
        return Probe(False, f"the Docker engine could not be asked for images: {_short(e)}")
    if missing:
        return Probe(False, f"a Docker engine answers ({_where()}) but lacks {', '.join(missing)} "
                            f"({BUILD_HINT})")
    return Probe(True, f"a Docker engine answers ({_where()}) and has the {flavor} images")


def _where() -> str:
    host = os.environ.get("DOCKER_HOST")
    return f"DOCKER_HOST={mask_url(host)}" if host else "the default socket"


def _short(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    # docker-py wraps the transport's error in two layers of tuples: name the cause
    for marker, plain in (("FileNotFoundError", "no socket there"), ("ermission denied", "permission denied"),
                          ("onnection refused", "connection refused"), ("timed out", "timed out")):
        if marker in text:
            return plain
    return text if len(text) <= 200 else text[:197] + "..."
