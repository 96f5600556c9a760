"""Which server the lab runs: the flavors, where their programs are, how to start them.

A :class:`Flavor` is data: its name (``mysql-9.7``), its engine (``mariadb`` or
``mysql``: how nodes are initialised and configured, the :class:`roleswap.lab.node.Engine`
of :mod:`roleswap.lab.mariadb` / :mod:`roleswap.lab.mysql`),
and where it comes from -- the host's own Debian package, or a Debian suite fetched
into the per-user cache by :mod:`roleswap.lab.debfetch` on first use.

:func:`get_server` turns a flavor name into a :class:`Server`: the version and the
argv that runs each of its programs (the host's binary, or the cached binary through
the cached dynamic loader).  :func:`server_rows` says, without fetching anything, what
each flavor's state is here (``roleswap lab servers``).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from roleswap.errors import LabError, MissingBinaryError
from roleswap.lab import debfetch, procs

DEFAULT_SERVER = "mariadb-10.11"


@dataclass(frozen=True)
class Flavor:
    """One server flavor the lab can run."""

    name: str  # what --server takes
    engine: str  # "mariadb" | "mysql": also the kind of its lab nodes
    series: str  # "major.minor" the server must report
    suite: str | None  # Debian suite it is fetched from; None: the host's own packages
    packages: tuple[str, ...]  # Debian packages (the host's, or fetched with their closure)
    daemon: str  # the server program, e.g. "mariadbd" / "mysqld"
    note: str
    host_programs: tuple[str, ...] = ()  # what the host must have (the host's own flavor)
    # Unpacked without their dependency closure (see debfetch.ensure): for files only.
    loose: tuple[str, ...] = ()

    @property
    def fetched(self) -> bool:
        return self.suite is not None


FLAVORS: dict[str, Flavor] = {f.name: f for f in (
    Flavor("mariadb-10.11", "mariadb", "10.11", None, ("mariadb-server",), "mariadbd",
           "the host's Debian package (Debian 12)", ("mariadbd", "mariadb-install-db")),
    Flavor("mariadb-11.8", "mariadb", "11.8", "trixie", ("mariadb-server-core", "mariadb-client-core"),
           "mariadbd", "Debian 13 (trixie) packages, unpacked into the cache",
           # the plugin directory (auth_ed25519, metadata_lock_info) ships in mariadb-server
           loose=("mariadb-server",)),
    Flavor("mysql-9.7", "mysql", "9.7", "sid", ("mysql-server-core", "mysql-client-core"),
           "mysqld", "Oracle MySQL Community from Debian sid, unpacked into the cache"),
)}


def flavor(name: str) -> Flavor:
    """The flavor called ``name``, or a LabError listing the valid names."""
    try:
        return FLAVORS[name]
    except KeyError:
        raise LabError(f"unknown server flavor {name!r}",
                       remedy=f"use one of: {', '.join(FLAVORS)} (see `roleswap lab servers`)") from None


@dataclass(frozen=True)
class Server:
    """A flavor ready to run here: its version and how to start its programs."""

    flavor: Flavor
    version: str  # "10.11.19-MariaDB-0+deb12u1" (host) / Debian package version (fetched)
    root: Path | None = None  # the unpacked prefix of a fetched flavor

    @property
    def usr(self) -> Path:
        """The prefix's ``usr`` (basedir); ``/usr`` for the host's packages."""
        return self.root / "usr" if self.root else Path("/usr")

    def argv(self, program: str) -> list[str]:
        """The argv prefix that runs ``program`` (arguments follow, e.g. --defaults-file first)."""
        if self.root is None:
            return [procs.require(program)[program]]
        for d in ("usr/sbin", "usr/bin"):
            path = self.root / d / program
            if path.is_file():
                return debfetch.loader_argv(self.root, path)
        raise MissingBinaryError(f"{program} is not in {self.root}",
                                 remedy=f"remove {self.root.parent} and run `roleswap lab fetch "
                                        f"{self.flavor.name}` again")


def get_server(name: str = DEFAULT_SERVER, say: Callable[[str], None] = lambda _m: None,
               fetch: bool = True) -> Server:
    """The :class:`Server` of flavor ``name``; fetches a non-host flavor first when
    ``fetch`` (progress goes to ``say``), else raises if it is not cached yet."""
    fl = flavor(name)
    if not fl.fetched:
        binary = procs.require(fl.daemon)[fl.daemon]
        return Server(fl, _host_version(binary))
    got = debfetch.cached(fl.name, (*fl.packages, *fl.loose))
    if got is None:
        if not fetch:
            raise LabError(f"server flavor {fl.name} is not in the cache ({debfetch.cache_root()})",
                           remedy=f"fetch it: roleswap lab fetch {fl.name}")
        got = debfetch.ensure(fl.name, str(fl.suite), fl.packages, fl.packages[0], fl.series, say,
                              fl.loose)
    return Server(fl, got.version, got.root)


def _host_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    # "mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64 (Debian 12)"
    words = out.stdout.split()
    return words[2] if len(words) > 2 else "unknown"


def server_rows() -> list[dict[str, str]]:
    """Every flavor with its version and state here, never fetching anything.

    ``state``: ``ready`` (runs now), ``installable`` (first use fetches it) or
    ``missing``; ``detail`` says where it is, what a fetch costs, or what is lacking.
    """
    rows = []
    for fl in FLAVORS.values():
        row = {"name": fl.name, "engine": fl.engine, "source": fl.note}
        if not fl.fetched:
            binary = procs.which(fl.daemon)
            if binary is None:
                row |= {"version": "-", "state": "missing",
                        "detail": f"install it: sudo apt-get install -y {' '.join(fl.packages)}"}
            else:
                version = _host_version(binary)
                odd = "" if version.startswith(fl.series + ".") else f" (not {fl.series}: the host's own)"
                row |= {"version": version, "state": "ready", "detail": f"{binary}{odd}"}
        elif (got := debfetch.cached(fl.name, (*fl.packages, *fl.loose))) is not None:
            row |= {"version": got.version, "state": "ready", "detail": f"cached in {got.dir}"}
        elif lacking := debfetch.missing_tools():
            row |= {"version": f"{fl.series}.x", "state": "missing",
                    "detail": f"fetching needs {', '.join(lacking)}"}
        else:
            row |= {"version": f"{fl.series}.x", "state": "installable",
                    "detail": f"first use fetches {' '.join(fl.packages)} from Debian {fl.suite} "
                              f"into {debfetch.cache_root() / fl.name}"}
        rows.append(row)
    return rows
