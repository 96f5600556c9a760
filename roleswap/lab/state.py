"""The lab's persisted state: ``DIR/lab.json`` (every process by PID, the hosts' network).

Written after *each* process starts, so a crash half-way still leaves enough for
``lab down`` to stop everything by PID.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from roleswap.errors import LabError
from roleswap.lab import procs
from roleswap.lab.flavors import DEFAULT_SERVER
from roleswap.lab.node import DB_KINDS

STATE_FILE = "lab.json"
CONFIG_FILE = "roleswap.toml"
DEFAULT_DIR = ".lab"


@dataclass
class LabNode:
    name: str
    kind: str  # "mariadb" | "mysql" (database nodes, see node.DB_KINDS) | "redis" | "sshd"
    pid: int
    host: str
    port: int
    dir: str
    marker: str  # must appear in /proc/PID/cmdline before we signal the PID

    def alive(self) -> bool:
        return procs.alive(self.pid, self.marker)

    @property
    def is_db(self) -> bool:
        """A database server (MariaDB or MySQL), as opposed to redis or sshd."""
        return self.kind in DB_KINDS


@dataclass
class Lab:
    dir: Path
    nodes: list[LabNode] = field(default_factory=list)
    cluster: str = "lab"
    gtid: bool = True
    # `lab up --hosts`: namespaces, links, addresses (see roleswap.lab.hosts); {} otherwise
    hosts: dict[str, Any] = field(default_factory=dict)
    server: str = DEFAULT_SERVER  # the flavor (roleswap.lab.flavors) every database node runs

    @property
    def config_path(self) -> Path:
        return self.dir / CONFIG_FILE

    @property
    def state_path(self) -> Path:
        return self.dir / STATE_FILE

    def node(self, name: str) -> LabNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise LabError(f"no lab node named {name!r}", remedy="see `roleswap lab status`")

    def save(self) -> None:
        data = {"cluster": self.cluster, "gtid": self.gtid, "server": self.server,
                "nodes": [asdict(n) for n in self.nodes], "hosts": self.hosts}
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self.state_path)

    @classmethod
    def load(cls, directory: Path) -> Lab:
        path = directory / STATE_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise LabError(
                f"no lab in {directory} ({STATE_FILE} not found)",
                remedy="start one with `roleswap lab up`, or pass --dir",
            ) from None
        except (OSError, ValueError) as e:
            raise LabError(f"cannot read {path}: {e}", remedy=f"inspect or delete {path}") from None
        nodes = [LabNode(**n) for n in data.get("nodes", [])]
        return cls(Path(directory), nodes, data.get("cluster", "lab"), data.get("gtid", True),
                   data.get("hosts") or {}, data.get("server") or DEFAULT_SERVER)

    def recorder(self) -> Callable[[LabNode], None]:
        """A thread-safe ``record(node)``: replace the node of that name and save at once
        (lab up starts nodes in parallel; each is on disk before the next can crash)."""
        lock = threading.Lock()

        def record(node: LabNode) -> None:
            with lock:
                self.nodes[:] = [n for n in self.nodes if n.name != node.name] + [node]
                self.save()

        return record
