"""Fetch a server flavor's Debian packages into a per-user cache and unpack them.

A flavor that is not the host's own (MySQL 9.7 from Debian sid, MariaDB 11.8 from
trixie) needs a newer glibc/libstdc++ than the host has, so it is never installed into
the system.  Instead (see ``shared/notes/mysql-facts.md``, "way B"):

1. **resolve**: a private apt state (its own sources file naming ONE suite of the
   Debian mirror apt already uses, its own lists, cache and an EMPTY dpkg status, no
   host hooks) is updated, and ``apt-get install --simulate`` lists the packages'
   whole dependency closure, libc included;
2. **download**: ``apt-get download`` fetches exactly those versions;
3. **unpack**: ``dpkg-deb -x`` each into a prefix.  The server then runs through the
   prefix's own dynamic loader (:func:`loader_argv`), so no root is needed, and
   nothing outside the cache is written: not the system's apt sources, lists or
   cache, not the dpkg status.

The result lives in ``$XDG_CACHE_HOME/roleswap/servers/<flavor>/`` (``root/`` = the
prefix, ``manifest.json``, ``complete``).  It is built in a temporary directory next to
it and renamed into place when complete, under an exclusive ``flock`` per flavor: a
second process that asks meanwhile waits and then reuses it; a crash leaves only a
temporary directory, removed by the next fetch.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from roleswap.errors import LabError, MissingBinaryError

KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
DEFAULT_MIRROR = "http://deb.debian.org/debian/"
MIRROR_ENV = "ROLESWAP_DEBIAN_MIRROR"  # override the mirror taken from the host's apt
# Where the unpacked dynamic loader and libraries live (Debian amd64, merged /usr).
LOADER = "usr/lib64/ld-linux-x86-64.so.2"
LIB_DIRS = ("usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu")
MANIFEST = "manifest.json"
COMPLETE = "complete"

Say = Callable[[str], None]


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/roleswap/servers`` (default ``~/.cache/roleswap/servers``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "roleswap" / "servers"


@dataclass(frozen=True)
class Fetched:
    """A complete, unpacked flavor in the cache."""

    dir: Path  # cache_root()/<flavor>
    version: str  # the server package's Debian version, e.g. "9.7.4-2"
    packages: tuple[tuple[str, str], ...]  # (name, version) of everything unpacked
    mirror: str
    suite: str

    @property
    def root(self) -> Path:
        return self.dir / "root"


def loader_argv(root: Path, program: Path) -> list[str]:
    """argv prefix running ``program`` (inside ``root``) with ``root``'s own loader and libraries.

    The kernel starts the loader, so /proc/PID/cmdline reads
    ``ROOT/usr/lib64/ld-linux-x86-64.so.2 --library-path ... ROOT/usr/sbin/mysqld ARGS``;
    the program still sees its own path as argv[0] (servers derive basedir from it).
    """
    libs = ":".join(str(root / d) for d in LIB_DIRS if (root / d).is_dir())
    return [str(root / LOADER), "--library-path", libs, str(program)]


def cached(name: str, wants: tuple[str, ...] = ()) -> Fetched | None:
    """The complete cached copy of flavor ``name``, or None (never fetches).

    A copy that lacks one of the packages named in ``wants`` (fetched by an older
    roleswap whose flavor had fewer packages) counts as absent, so it is fetched again.
    """
    d = cache_root() / name
    if not (d / COMPLETE).is_file():
        return None
    try:
        m = json.loads((d / MANIFEST).read_text())
        got = Fetched(d, str(m["version"]), tuple((str(a), str(b)) for a, b in m["packages"]),
                      str(m["mirror"]), str(m["suite"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    have = {p for p, _ in got.packages}
    return got if all(w in have for w in wants) else None


def missing_tools() -> list[str]:
    """What this machine lacks to fetch a flavor (Debian package names); [] if nothing."""
    missing = []
    if shutil.which("apt-get") is None:
        missing.append("apt")
    if shutil.which("dpkg-deb") is None:
        missing.append("dpkg")
    if not KEYRING.is_file():
        missing.append("debian-archive-keyring")
    if _arch() not in ("", "amd64"):
        missing.append(f"an amd64 machine (this one is {_arch()})")
    return missing


def _arch() -> str:
    if shutil.which("dpkg") is None:
        return os.uname().machine.replace("x86_64", "amd64")
    res = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=False)
    return res.stdout.strip()


def host_mirror() -> str:
    """The Debian mirror the host's apt uses (``$ROLESWAP_DEBIAN_MIRROR`` overrides it)."""
    env = os.environ.get(MIRROR_ENV)
    if env:
        return env if env.endswith("/") else env + "/"
    if shutil.which("apt-get"):
        res = subprocess.run(
            ["apt-get", "indextargets", "--format", "$(REPO_URI) $(ORIGIN) $(LABEL)",
             "Identifier: Packages"],
            capture_output=True, text=True, check=False, env=_c_env())
        for line in res.stdout.splitlines():
            words = line.split()
            if len(words) == 3 and words[1:] == ["Debian", "Debian"]:
                return words[0]
    return DEFAULT_MIRROR


def _c_env() -> dict[str, str]:
    return {**os.environ, "LC_ALL": "C", "LANG": "C"}


def ensure(name: str, suite: str, packages: tuple[str, ...], main_package: str, series: str,
           say: Say, loose: tuple[str, ...] = ()) -> Fetched:
    """Return flavor ``name`` from the cache, fetching it first if needed.

    ``packages`` (from Debian ``suite``) are resolved with their dependency closure;
    ``loose`` packages are unpacked at ``main_package``'s version WITHOUT their
    dependencies (e.g. ``mariadb-server`` for its plugin directory, whose own
    dependencies -- perl, galera, rsync... -- a lab server never uses);
    ``main_package``'s version must start with ``series`` (e.g. "9.7."), else the suite
    has moved on and we refuse rather than run another server under this name.
    Raises MissingBinaryError when apt/dpkg/the keyring are missing, LabError when
    the mirror or the packages fail.
    """
    wants = (*packages, *loose)
    found = cached(name, wants)
    if found:
        return found
    missing = missing_tools()
    if missing:
        raise MissingBinaryError(
            f"cannot fetch server flavor {name}: this machine lacks {', '.join(missing)}",
            remedy="install them: sudo apt-get install -y apt dpkg debian-archive-keyring "
                   "(flavors other than the host's own are fetched as Debian amd64 packages)",
        )
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f".{name}.lock", name, say):
        found = cached(name, wants)  # someone else finished it while we waited
        if found:
            return found
        for stale in root.glob(f".tmp-{name}-*"):
            shutil.rmtree(stale, ignore_errors=True)  # a crashed fetch (we hold the lock)
        tmp = root / f".tmp-{name}-{os.getpid()}"
        try:
            fetched = _build(tmp, name, suite, packages, main_package, series, say, loose)
            final = root / name
            shutil.rmtree(final, ignore_errors=True)  # an incomplete leftover (no marker)
            tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return Fetched(final, fetched.version, fetched.packages, fetched.mirror, fetched.suite)


@contextlib.contextmanager
def _locked(path: Path, name: str, say: Say) -> Iterator[None]:
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"{name}: another process is fetching it; waiting (lock {path})")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class _Apt:
    """apt-get on a private state: one suite, empty dpkg status, no host hooks."""

    def __init__(self, d: Path, mirror: str, suite: str) -> None:
        self.dir = d
        for sub in ("sources", "prefs", "lists/partial", "cache/archives/partial", "state", "log"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "status").write_text("")
        (d / "sources" / "debian.sources").write_text(
            f"Types: deb\nURIs: {mirror}\nSuites: {suite}\nComponents: main\nSigned-By: {KEYRING}\n")
        # Read after the host's apt.conf(.d) (so its proxy settings apply), this file
        # points every directory at ours and drops the host's update/dpkg hooks.
        lines = ["#clear APT::Update::Post-Invoke-Success;", "#clear APT::Update::Post-Invoke;",
                 "#clear DPkg::Post-Invoke;", "#clear DPkg::Pre-Install-Pkgs;", "#clear DPkg::Pre-Invoke;"]
        settings = {
            "Dir::Etc::sourcelist": "/dev/null", "Dir::Etc::sourceparts": d / "sources",
            "Dir::Etc::preferences": "/dev/null", "Dir::Etc::preferencesparts": d / "prefs",
            "Dir::State": d / "state", "Dir::State::Lists": d / "lists", "Dir::State::status": d / "status",
            "Dir::Cache": d / "cache", "Dir::Log": d / "log",
            # the mirror's Release files of sid/trixie may be past Valid-Until
            "Acquire::Check-Valid-Until": "false", "Acquire::Languages": "none",
            "APT::Install-Recommends": "false", "APT::Get::Assume-Yes": "true",
        }
        if os.geteuid() == 0:
            settings["APT::Sandbox::User"] = "root"  # _apt cannot write under root's home
        lines += [f'{k} "{v}";' for k, v in settings.items()]
        self.conf = d / "apt.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    def run(self, *args: str, cwd: Path | None = None, timeout: float = 600) -> str:
        argv = ["apt-get", "-c", str(self.conf), "-q", *args]
        try:
            res = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=cwd,
                                 env=_c_env(), timeout=timeout)
        except subprocess.TimeoutExpired:
            raise LabError(f"`apt-get {args[0]}` took more than {timeout:.0f}s",
                           remedy="check the network path to the Debian mirror and retry") from None
        if res.returncode != 0:
            err = " | ".join(ln for ln in res.stderr.strip().splitlines() if ln.startswith(("E:", "W:")))
            raise LabError(f"`apt-get {args[0]}` (private apt state in {self.dir}) failed: "
                           f"{err or res.stderr.strip()[-300:]}",
                           remedy=_apt_remedy(err or res.stderr))
        return res.stdout


def _apt_remedy(err: str) -> str:
    if "NO_PUBKEY" in err or "not signed" in err or "EXPKEYSIG" in err:
        return ("the Debian archive keyring is too old to verify this suite: "
                "sudo apt-get update && sudo apt-get install -y debian-archive-keyring")
    if "Unable to locate package" in err or "no installation candidate" in err:
        return "the suite no longer has this package; this roleswap needs an update"
    return f"check network access to the Debian mirror (or set ${MIRROR_ENV}) and retry"


_INST = re.compile(r"^Inst (\S+) (?:\[[^\]]*\] )?\((\S+) ")
_URI = re.compile(r"^'(\S+)' (\S+) (\d+) ")


def _build(tmp: Path, name: str, suite: str, packages: tuple[str, ...], main_package: str,
           series: str, say: Say, loose: tuple[str, ...] = ()) -> Fetched:
    t0 = time.monotonic()
    mirror = host_mirror()
    apt = _Apt(tmp / "apt", mirror, suite)
    say(f"{name}: resolving {' '.join(packages)} in Debian {suite} ({mirror})")
    apt.run("update", timeout=300)
    plan = apt.run("install", "--simulate", *packages)
    closure = [(m.group(1), m.group(2)) for m in map(_INST.match, plan.splitlines()) if m]
    versions = dict(closure)
    if main_package not in versions:
        raise LabError(f"Debian {suite} offers no {main_package}",
                       remedy=_apt_remedy("no installation candidate"))
    upstream = versions[main_package].split(":", 1)[-1]
    if not upstream.startswith(series + "."):
        raise LabError(
            f"Debian {suite} now has {main_package} {versions[main_package]}, not {series}.x",
            remedy=f"flavor {name} can no longer be fetched; see `roleswap lab servers` for the others")
    # Loose packages come from the same source build as the main package: same version.
    closure += [(p, versions[main_package]) for p in loose if p not in versions]
    wanted = [f"{p}={v}" for p, v in closure]
    uris = apt.run("download", "--print-uris", *wanted)
    size = sum(int(m.group(3)) for m in map(_URI.match, uris.splitlines()) if m)
    say(f"{name}: downloading {len(closure)} packages ({size / 1e6:.0f} MB)")
    debs = tmp / "debs"
    debs.mkdir()
    apt.run("download", *wanted, cwd=debs)
    files = sorted(debs.glob("*.deb"))
    if len(files) != len(closure):
        raise LabError(f"downloaded {len(files)} of {len(closure)} packages", remedy="retry")
    say(f"{name}: unpacking {len(files)} packages")
    root = tmp / "root"
    root.mkdir()
    for deb in files:
        res = subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], capture_output=True, text=True,
                             check=False)
        if res.returncode != 0:
            raise LabError(f"dpkg-deb -x {deb.name} failed: {res.stderr.strip()[-300:]}",
                           remedy=f"free disk space under {tmp.parent} and retry")
    if not (root / LOADER).exists():
        raise LabError(f"the unpacked packages have no {LOADER}", remedy="this roleswap needs an update")
    shutil.rmtree(debs)
    shutil.rmtree(tmp / "apt")
    manifest = {"flavor": name, "suite": suite, "mirror": mirror, "version": upstream,
                "packages": closure, "fetched_at": time.time(),
                "seconds": round(time.monotonic() - t0, 1), "download_bytes": size}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
    (tmp / COMPLETE).write_text("")
    say(f"{name}: {main_package} {upstream} ready in {time.monotonic() - t0:.1f}s ({tmp.parent / name})")
    return Fetched(tmp, upstream, tuple(closure), mirror, suite)
