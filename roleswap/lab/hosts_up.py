"""``lab up --hosts``: every database server on a "host" of its own (see :mod:`.hosts`).

Builds the namespaces and links (:class:`roleswap.lab.hosts.HostsNet`), starts redis,
the servers (inside their namespaces) and an sshd per host, replicates, puts the VIP on
db1 and writes a config with the ``vip`` switch method.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from roleswap.lab import procs
from roleswap.lab.engines import engine_for
from roleswap.lab.flavors import Server, get_server
from roleswap.lab.hosts import (
    DEFAULT_SUBNET,
    MYSQL_PORT,
    NODE_OFF,
    ROOT_OFF,
    SSH_PORT,
    VIP_OFF,
    HostsNet,
    _ip,
    addr,
    check_free,
    lab_prefix,
    make_keys,
    parse_subnet,
    require_root,
    sshd_config_path,
    start_sshd,
    toml,
    write_sshd_config,
)
from roleswap.lab.node import Accounts, NodeSpec, start_node
from roleswap.lab.provision import ensure_template, new_accounts, write_config
from roleswap.lab.redis_server import start_redis
from roleswap.lab.replication import make_writable, prove_replication, start_replication
from roleswap.lab.state import Lab, LabNode


def lab_up_hosts(directory: Path, replicas: int, gtid: bool, cluster: str, subnet: str | None,
                 say: Callable[[str], None], on_failure: Callable[[Path], object],
                 srv: Server | None = None) -> Lab:
    """Like :func:`roleswap.lab.lab_up`, with every node in its own namespace + sshd.

    ``srv``: the server flavor to run (default: the host's MariaDB), already fetched.
    ``on_failure(directory)`` runs when starting fails after something exists (it is
    ``lab_down``: passed in so that this module does not import the one that calls it).
    """
    require_root()
    net = parse_subnet(subnet or DEFAULT_SUBNET)
    bins = procs.require("redis-server", "sshd", "ssh-keygen", "ip", "arping")
    srv = srv or get_server()
    engine = engine_for(srv.flavor.engine)
    prefix = lab_prefix(directory)
    check_free(net, prefix)  # before anything exists
    names = [f"db{i + 1}" for i in range(replicas + 1)]
    ips = {n: addr(net, NODE_OFF + i) for i, n in enumerate(names)}
    vip = addr(net, VIP_OFF)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)  # the config inside holds passwords, ssh/ the client key
    hstate: dict[str, Any] = {"prefix": prefix, "subnet": str(net), "vip": vip, "interface": "eth0",
                              "root_address": addr(net, ROOT_OFF), "app_ns": f"{prefix}-app",
                              "hosts": {n: {"ns": f"{prefix}-{n}", "address": ips[n]} for n in names},
                              "namespaces": [], "links": []}
    lab = Lab(directory, cluster=cluster, gtid=gtid, hosts=hstate, server=srv.flavor.name)
    lab.save()
    t0 = time.monotonic()
    try:
        HostsNet(hstate, lab.save).build(names)
        keys = make_keys(directory, ips)
        template = ensure_template(engine, srv, say)
        acc = new_accounts()
        record = lab.recorder()
        start_redis(directory / "redis", on_spawn=lambda r: record(
            LabNode("redis", "redis", r.pid, r.host, r.port, str(r.dir), r.marker)))
        specs = [NodeSpec(name=n, server_id=i + 1, port=MYSQL_PORT, dir=directory / n,
                          bind=f"{ips[n]},{vip}", replica=i > 0, gtid=gtid)
                 for i, n in enumerate(names)]

        def start(spec: NodeSpec) -> None:
            ns = hstate["hosts"][spec.name]["ns"]
            start_node(spec, engine, srv, template, lambda pid: record(LabNode(
                spec.name, engine.kind, pid, ips[spec.name], MYSQL_PORT, str(spec.dir), str(spec.cnf))),
                wrap=["ip", "netns", "exec", ns])
            engine.bootstrap(spec, acc)
            if not spec.replica:
                make_writable(spec)  # its my.cnf says read_only=1, like every node's
            write_sshd_config(directory, spec.name, ips[spec.name])
            sdir = directory / spec.name / "ssh"
            start_sshd(directory, spec.name, ns, ips[spec.name], on_spawn=lambda pid: record(
                LabNode(f"{spec.name}-ssh", "sshd", pid, ips[spec.name], SSH_PORT, str(sdir),
                                str(sshd_config_path(directory, spec.name)))))

        with ThreadPoolExecutor(len(specs)) as pool:
            for fut in [pool.submit(start, s) for s in specs]:
                fut.result()
        lab.nodes.sort(key=lambda n: (n.kind != "redis", n.name))
        lab.save()
        for spec in specs[1:]:
            start_replication(spec, ips["db1"], MYSQL_PORT, acc)
        prove_replication(specs, gtid)
        ns1 = hstate["hosts"]["db1"]["ns"]
        _ip("-n", ns1, "addr", "add", f"{vip}/{net.prefixlen}", "dev", "eth0")
        subprocess.run(["ip", "netns", "exec", ns1, bins["arping"], "-q", "-U", "-c", "1", "-I", "eth0",
                        vip], check=False, capture_output=True, timeout=5)
        write_hosts_config(lab, acc, keys, vip, net)
    except BaseException:
        on_failure(directory)
        raise
    say(f"lab up ({srv.flavor.name}, hosts in namespaces {prefix}-*) in {time.monotonic() - t0:.1f}s: "
        f"{directory}")
    return lab


def write_hosts_config(lab: Lab, acc: Accounts, keys: dict[str, Path], vip: str,
                       net: ipaddress.IPv4Network) -> Path:
    """The loopback lab's config with the vip switch and without unix sockets: roleswap
    talks TCP to the hosts over the lab's veth, as it would to remote hosts."""
    path: Path = write_config(lab, acc)
    switch = "\n".join([
        'method = "vip"',
        f"vip = {toml(f'{vip}/{net.prefixlen}')}",
        'interface = "eth0"',
        "arping_count = 3",
        'ssh_user = "root"',
        f"ssh_key = {toml(str(keys['key']))}",
        f"known_hosts = {toml(str(keys['known_hosts']))}  # strict: the lab wrote the host keys",
    ])
    lines = [line for line in path.read_text().splitlines() if not line.startswith("socket = ")]
    text = "\n".join(lines).replace('method = "endpoint"', switch)
    text = text.replace("(written by `roleswap lab up`)", "(written by `roleswap lab up --hosts`)")
    path.write_text(text + "\n")  # still 0600: write_config created it so
    return path
