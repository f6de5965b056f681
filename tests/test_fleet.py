"""A topology spread over hosts (`hosts:`): its validation, its split into per-host topologies,
the bundle `nsgen render` writes (per-host scripts and the Ansible files), and, as root inside
the sandbox, real deployments by ansible-playbook onto "hosts" that are network + mount
namespaces each running sshd (tests/fleet_hosts.py): a 3-host Kubernetes-style cluster in vxlan
mode and a 2-host Docker-style overlay, with the cross-host checks, a second site.yml that
changes nothing, teardown restoring every host's snapshot, a fault on the second host rolled
back on every host, and a host that refuses in preflight stopping the fleet before any change.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from nsgen.cli import app
from nsgen.errors import TopologyError
from nsgen.fleet import load, load_fleet
from nsgen.fleet.bundle import write_fleet
from nsgen.load import topology_from_data
from nsgen.snapshot import diff_snapshots
from tests.fleet_hosts import UNDERLAY_GATEWAY, Fleet, Host
from tests.harness import sandboxed
from tests.test_k8s import SERVER

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "k8s-fleet.yaml"
BIN = Path(sys.executable).parent
ANSIBLE_PLAYBOOK = str(BIN / "ansible-playbook")
SRC = "f.yaml"

DOCKER: dict[str, Any] = {
    "name": "dock",
    "description": "a Docker-style overlay on two hosts",
    "hosts": {
        "alpha": {"address": "192.0.2.1", "place": ["web", "db"]},
        "beta": {"address": "192.0.2.2", "place": ["client", "worker", "other"]},
    },
    "host": {"external": ["eth0"]},
    "networks": {
        "app": {"subnet": "10.20.0.0/24"},
        "back": {"subnet": "10.21.0.0/24", "internal": True},
        "side": {"subnet": "10.22.0.0/24"},
    },
    "containers": {
        "web": {"networks": ["app"], "publish": ["8080:80"]},
        "db": {"networks": ["back"]},
        "client": {"networks": ["app"]},
        "worker": {"networks": ["app", "back"]},
        "other": {"networks": ["side"]},
    },
    "checks": [
        {"from": "client", "to": "web"},
        {"from": "web", "to": "client"},
        {"from": "client", "kind": "dns", "name": "web"},
        {"from": "worker", "to": "db"},
        {"from": "db", "to": UNDERLAY_GATEWAY, "expect": "blocked"},
        {"from": "client", "to": UNDERLAY_GATEWAY},
        {"from": "web", "to": UNDERLAY_GATEWAY},
        {"from": "other", "to": "web", "expect": "blocked"},
        {"from": "client", "kind": "tcp", "to": "192.0.2.1", "port": 8080},
    ],
}


def example() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE.read_text())  # type: ignore[no-any-return]


def docker() -> dict[str, Any]:
    return copy.deepcopy(DOCKER)


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(TopologyError) as info:
        topology_from_data(data, SRC)
    return info.value.lines()


def write(tmp: Path, data: dict[str, Any]) -> Path:
    path = tmp / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# ---- the format and its validation ---------------------------------------------------------


def test_the_example_validates_and_single_host_commands_see_the_whole_cluster() -> None:
    result = CliRunner().invoke(app, ["validate", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "topology 'k8s-fleet' is valid: 9 namespace(s)" in result.output


def test_every_placement_problem_is_reported_at_once_with_its_path() -> None:
    data = example()
    data["hosts"]["alpha"]["place"] = ["node1", "web-a", "nowhere", "node2"]
    data["hosts"]["beta"]["place"] = ["node1"]
    data["hosts"]["gamma"]["place"] = []
    assert problems(data) == [
        "f.yaml: hosts.alpha.place[1]: 'web-a' is a pod: it runs on its node node1; place the node",
        "f.yaml: hosts.alpha.place[2]: 'nowhere' is not a namespace, container or node of the "
        "topology (known: node1, node2, node3)",
        "f.yaml: hosts.alpha.place[3]: node node2 would share host alpha with node node1 "
        "(hosts.alpha.place[0]): a node placed on a host becomes that machine's own network "
        "stack, so a host runs one node",
        "f.yaml: hosts.beta.place[0]: 'node1' is already placed (at hosts.alpha.place[0])",
        "f.yaml: cluster.nodes.node3: node3 is placed on no host: list it under one host's place",
    ]


def test_host_fields_are_checked_with_a_did_you_mean() -> None:
    data = example()
    data["hosts"]["alpha"]["adress"] = data["hosts"]["alpha"].pop("address")
    data["hosts"]["beta"]["ansible"] = {"ansible_usr": "root", "ansible_port": 0}
    data["hosts"]["gamma"]["ansible"] = {"ansible_host": "{{ lookup('pipe', 'id') }}"}
    assert problems(data) == [
        "f.yaml: hosts.alpha.address: required key is missing",
        "f.yaml: hosts.alpha.adress: unknown key 'adress' (did you mean 'address'?)",
        "f.yaml: hosts.beta.ansible.ansible_port: must be greater than or equal to 1, got 0",
        "f.yaml: hosts.beta.ansible.ansible_usr: unknown key 'ansible_usr' (did you mean "
        "'ansible_user'?)",
        "f.yaml: hosts.gamma.ansible.ansible_host: \"{{ lookup('pipe', 'id') }}\" holds '{{', "
        "which Ansible would read as a template",
    ]


def test_host_addresses_and_names_are_checked() -> None:
    data = example()
    data["name"] = "k8s-fleets"
    data["hosts"]["beta"]["address"] = "192.0.2.1"
    data["hosts"]["gamma"]["address"] = "10.244.2.1"
    assert problems(data) == [
        "f.yaml: hosts.alpha: this host's topology is named 'k8s-fleets-alpha', 16 bytes, "
        "over the limit of 15 (<topology>-<host>): shorten the topology's or the host's name",
        "f.yaml: hosts.beta.address: 192.0.2.1 is already the address of hosts.alpha",
        "f.yaml: hosts.gamma: this host's topology is named 'k8s-fleets-gamma', 16 bytes, "
        "over the limit of 15 (<topology>-<host>): shorten the topology's or the host's name",
        "f.yaml: hosts.gamma.address: 10.244.2.1 lies in 10.244.2.0/24, a subnet of the topology "
        "(namespaces.node3.bridges.cni0): the underlay must be apart from the networks built on it",
    ]


def test_a_veth_pair_cannot_cross_hosts_and_checks_name_their_machine() -> None:
    data = {
        "name": "pair",
        "hosts": {
            "alpha": {"address": "192.0.2.1", "place": ["red"]},
            "beta": {"address": "192.0.2.2", "place": ["blue"]},
        },
        "namespaces": {
            "red": {"interfaces": [{"peer": {"netns": "blue"}, "addresses": ["10.0.0.1/30"]}]},
            "blue": {},
        },
        "checks": [
            {"from": "host", "to": "red"},
            {"from": "red", "to": "blue", "kind": "tcp", "port": 80, "listen": True},
        ],
    }
    assert problems(data) == [
        "f.yaml: namespaces.red.interfaces[0].peer.netns: red is on host alpha and blue on beta: "
        "a veth pair cannot cross machines; cable both to a bridge under host: instead, which "
        "nsgen joins across the hosts",
        "f.yaml: checks[0].from: with hosts:, 'host' could be any machine's root namespace: name "
        "a namespace, container or node placed on the machine you mean",
        "f.yaml: checks[1].listen: check.sh starts its listener on the checking host (alpha), but "
        "blue is on beta: run a server in blue and drop listen",
    ]


def test_an_overlay_vni_must_name_a_bridge_that_spans_hosts() -> None:
    data = docker()
    data["overlay"] = {"vni": {"br-side": 7, "br-app": 7}}
    assert problems(data) == ["f.yaml: overlay.vni.br-app: VNI 7 is already given to br-side"]
    data["overlay"] = {"vni": {"br-side": 7}}
    assert problems(data) == [
        "f.yaml: overlay.vni.br-side: br-side is not a root bridge with ports on several hosts "
        "(those are: br-app, br-back)"
    ]


# ---- the split -------------------------------------------------------------------------------


def test_a_node_becomes_its_hosts_root_namespace_and_its_address_the_underlay() -> None:
    fleet = load_fleet(EXAMPLE)
    assert fleet is not None
    parts = {p.name: p.topology for p in fleet.parts}
    assert list(parts) == ["alpha", "beta", "gamma"]
    alpha = parts["alpha"]
    assert alpha.name == "k8s-fleet-alpha"
    assert list(alpha.namespaces) == ["web-a", "client-a"]
    assert "k8s-nodes" not in alpha.host.bridges and "cni0" in alpha.host.bridges
    flannel = alpha.host.vxlans["flannel.1"]
    assert (flannel.local, flannel.dev, flannel.port, flannel.id) == ("192.0.2.1", "eth0", 8472, 1)
    assert [(f.dst, f.dev) for f in alpha.host.fdb] == [
        ("192.0.2.2", "flannel.1"),
        ("192.0.2.3", "flannel.1"),
    ]
    assert all(r.to != "default" for r in alpha.host.routes)
    pod_end = alpha.namespaces["web-a"].interfaces[0].peer
    assert (pod_end.netns, pod_end.bridge) == ("host", "cni0")
    assert {c.table for c in alpha.host.iptables.chains} == {"nat"}
    assert alpha.host.sysctls["net.ipv4.ip_forward"] == "1"
    # checks run on the host of their `from`; a node or a namespace elsewhere is an address
    checks = {p.name: [(c.from_, c.to) for c in p.topology.checks] for p in fleet.parts}
    assert checks == {
        "alpha": [("client-a", "web-a"), ("client-a", "10.244.1.2")],
        "beta": [("client-b", "192.0.2.3"), ("client-b", "10.96.0.10")],
        "gamma": [("client-c", "10.244.0.2"), ("client-c", "192.0.2.1")],
    }


def test_a_docker_network_on_two_hosts_is_joined_by_a_vxlan_overlay(tmp_path: Path) -> None:
    _, fleet = load(write(tmp_path, docker()))
    assert fleet is not None
    alpha, beta = (p.topology for p in fleet.parts)
    # app and back span both hosts; side has a port on beta only
    assert list(alpha.host.bridges) == ["br-app", "br-back"]
    assert list(beta.host.bridges) == ["br-app", "br-back", "br-side"]
    app = alpha.host.vxlans["vx-4096"]
    assert (app.id, app.local, app.dev, app.port, app.learning) == (
        4096,
        "192.0.2.1",
        "eth0",
        4789,
        False,
    )
    assert beta.host.vxlans["vx-4097"].local == "192.0.2.2"
    # alpha routes beta's containers into the tunnels, and its ARP and FDB say where they are
    assert [(r.to, r.dev) for r in alpha.host.routes] == [
        ("10.20.0.3/32", "vx-4096"),
        ("10.20.0.4/32", "vx-4096"),
        ("10.21.0.3/32", "vx-4097"),
    ]
    assert {(n.address, n.lladdr) for n in alpha.host.neighbors} == {
        ("10.20.0.3", "0a:4e:c0:00:02:02"),
        ("10.20.0.4", "0a:4e:c0:00:02:02"),
        ("10.21.0.3", "0a:4e:c0:00:02:02"),
    }
    assert {(f.dev, f.dst) for f in alpha.host.fdb} == {
        ("vx-4096", "192.0.2.2"),
        ("vx-4097", "192.0.2.2"),
    }
    assert alpha.host.sysctls["net.ipv4.conf.br-app.proxy_arp"] == "1"
    rules = [rule_text(r) for r in alpha.host.iptables.rules]
    # web's published port is published where web runs, and only there
    assert "nat NSGEN-dock-DNAT -p tcp --dport 8080 -j DNAT --to-destination 10.20.0.2:80" in rules
    assert not any(r.to_destination for r in beta.host.iptables.rules)
    assert "nat POSTROUTING -s 10.20.0.0/24 -o vx-4096 -j RETURN (insert)" in rules
    assert "filter NSGEN-dock-FWD -i br-back -o vx-4096 -j DROP" in rules
    assert "filter NSGEN-dock-FWD -i vx-4097 ! -o br-back -j DROP" in rules


def rule_text(rule: Any) -> str:
    """A core rule as 'TABLE CHAIN iptables words', for comparisons."""
    words = [rule.table, rule.chain]
    for field, flag in (("source", "-s"), ("in_interface", "-i"), ("out_interface", "-o")):
        if getattr(rule, field):
            words += [flag, getattr(rule, field)]
        if rule.not_ is not None and getattr(rule.not_, field):
            words += ["!", flag, getattr(rule.not_, field)]
    if rule.protocol:
        words += ["-p", rule.protocol]
    if rule.dport:
        words += ["--dport", str(rule.dport)]
    words += ["-j", str(rule.jump)]
    if rule.to_destination:
        words += ["--to-destination", rule.to_destination]
    return " ".join(words) + (" (insert)" if rule.insert else "")


def test_render_writes_a_bundle_per_host_and_the_ansible_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["render", str(EXAMPLE), "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    written = sorted(str(Path(line).relative_to(tmp_path)) for line in result.output.split())
    assert written == sorted(
        [
            f"{h}/{s}"
            for h in ("alpha", "beta", "gamma")
            for s in ("setup.sh", "teardown.sh", "check.sh", "preflight.sh")
        ]
        + [f"ansible/{n}" for n in ("inventory.yml", "site.yml", "teardown.yml", "check.yml")]
    )
    setup = (tmp_path / "beta" / "setup.sh").read_text()
    assert "# setup.sh for the nsgen topology k8s-fleet-beta" in setup
    assert (
        "link add flannel.1 type vxlan id 1 local 192.0.2.2 dev eth0 dstport 8472 nolearning"
        in setup
    )
    inventory = yaml.safe_load((tmp_path / "ansible" / "inventory.yml").read_text())
    assert inventory["all"]["hosts"]["gamma"] == {
        "ansible_host": "192.0.2.3",
        "ansible_user": "root",
    }
    result = CliRunner().invoke(app, ["render", str(EXAMPLE), "--install-to", str(tmp_path)])
    assert result.exit_code == 2
    assert "give -o DIR only" in result.output


def test_up_dry_run_with_hosts_names_each_hosts_share_and_the_playbook() -> None:
    result = CliRunner().invoke(app, ["up", "--dry-run", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:2] == [
        "k8s-fleet: 3 host(s), run by ansible-playbook site.yml",
        "  alpha (192.0.2.1): k8s-fleet-alpha, 10 steps, 2 check(s)",
    ]


def _bundle(tmp_path: Path) -> Path:
    for data in (example(), docker()):
        _, fleet = load(write(tmp_path, data))
        assert fleet is not None
        write_fleet(fleet, tmp_path / data["name"])
    return tmp_path


def test_the_playbooks_pass_ansible_playbook_syntax_check(tmp_path: Path) -> None:
    for name in ("k8s-fleet", "dock"):
        ansible = _bundle(tmp_path) / name / "ansible"
        result = subprocess.run(
            [
                ANSIBLE_PLAYBOOK,
                "-i",
                "inventory.yml",
                "--syntax-check",
                "site.yml",
                "teardown.yml",
                "check.yml",
            ],
            cwd=ansible,
            capture_output=True,
            text=True,
            env=_quiet_ansible(tmp_path),
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_playbooks_pass_ansible_lint(tmp_path: Path) -> None:
    """ansible-lint installs from PyPI (the test extra): it must run here and find nothing."""
    lint = BIN / "ansible-lint"
    assert lint.exists(), "ansible-lint is not installed: make install (pyproject's test extra)"
    bundle = _bundle(tmp_path)
    playbooks = [
        str(bundle / name / "ansible" / playbook)
        for name in ("k8s-fleet", "dock")
        for playbook in ("site.yml", "teardown.yml", "check.yml")
    ]
    result = subprocess.run(
        [str(lint), "--offline", "--profile", "production", *playbooks],
        cwd=bundle,
        capture_output=True,
        text=True,
        env=_quiet_ansible(tmp_path),
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 files processed" in result.stdout + result.stderr, result.stdout + result.stderr


def _quiet_ansible(tmp: Path) -> dict[str, str]:
    import os

    home = tmp / "home"
    return {
        **os.environ,
        "HOME": str(home),
        "ANSIBLE_HOME": str(home / ".ansible"),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "ANSIBLE_NOCOLOR": "1",
        "NO_COLOR": "1",
    }


# ---- real deployments, inside the sandbox ----------------------------------------------------


def playbook(fleet: Fleet, bundle: Path, name: str) -> subprocess.CompletedProcess[str]:
    ansible = bundle / "ansible"
    return subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", str(ansible / "inventory.yml"), str(ansible / name)],
        capture_output=True,
        text=True,
        env=fleet.env(),
        timeout=300,
    )


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP's counters per host: {'alpha': {'ok': 5, 'changed': 2, ...}}."""
    found = {}
    for host, counters in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output, re.MULTILINE):
        found[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counters)}
    return found


@contextmanager
def fleet_of(tmp: Path, hosts: dict[str, str]) -> Iterator[Fleet]:
    fleet = Fleet(tmp / "fleet")
    try:
        for name, address in hosts.items():
            fleet.add_host(name, address)
        yield fleet
    finally:
        fleet.close()


def reachable(fleet: Fleet, data: dict[str, Any], tmp: Path) -> tuple[Path, Path]:
    """The topology file with every host reachable by the fleet's Ansible, and its bundle."""
    data = copy.deepcopy(data)
    for spec in data["hosts"].values():
        spec["ansible"] = fleet.ansible()
    path = write(tmp, data)
    fleet_ = load_fleet(path)
    assert fleet_ is not None
    write_fleet(fleet_, tmp / "bundle")
    return path, tmp / "bundle"


@contextmanager
def servers(fleet: Fleet, where: dict[str, list[str]], port: int) -> Iterator[None]:
    """The HTTP server of tests/test_k8s.py ("<name> <client address>") in each namespace,
    on each host; stopped by PID."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for host, names in where.items():
            for name in names:
                argv = [*fleet.hosts[host].enter(), "ip", "netns", "exec", name]
                processes.append(
                    subprocess.Popen(
                        [*argv, sys.executable, "-c", SERVER, name, str(port)],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
        for host, names in where.items():
            for name in names:
                deadline = time.monotonic() + 10
                while (
                    not fleet.hosts[host]
                    .run("ip", "netns", "exec", name, "ss", "-Hltn", f"sport = :{port}")
                    .stdout.strip()
                ):
                    assert time.monotonic() < deadline, f"the server in {name} did not start"
                    time.sleep(0.05)
        yield
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=5)


def fetch(host: Host, netns: str | None, url: str) -> list[str]:
    """One bounded HTTP GET from a namespace of a host: [name that answered, address it saw]."""
    inside = ["ip", "netns", "exec", netns] if netns else []
    result = host.run(*inside, "curl", "-s", "--max-time", "3", url, check=False)
    return result.stdout.split()


def snapshots(fleet: Fleet) -> dict[str, dict[str, Any]]:
    return {name: host.snapshot() for name, host in fleet.hosts.items()}


def assert_restored(fleet: Fleet, before: dict[str, dict[str, Any]]) -> None:
    for name, host in fleet.hosts.items():
        differences = diff_snapshots(before[name], host.snapshot())
        assert differences == [], f"{name} changed:\n" + "\n".join(differences)


K8S_HOSTS = {"alpha": "192.0.2.1", "beta": "192.0.2.2", "gamma": "192.0.2.3"}
WEB_PODS = {"alpha": ["web-a"], "beta": ["web-b"], "gamma": ["web-c"]}


@sandboxed
def test_a_kubernetes_cluster_on_three_hosts_deploys_checks_and_tears_down(tmp_path: Path) -> None:
    with fleet_of(tmp_path, K8S_HOSTS) as fleet:
        _, bundle = reachable(fleet, example(), tmp_path)
        before = snapshots(fleet)

        first = playbook(fleet, bundle, "site.yml")
        assert first.returncode == 0, first.stdout + first.stderr
        assert {h: c["changed"] > 0 for h, c in recap(first.stdout).items()} == dict.fromkeys(
            K8S_HOSTS, True
        )
        # flannel.1 over each host's underlay, with the underlay's MTU less 50
        for host in fleet.hosts.values():
            links = {
                link["ifname"]: link["mtu"]
                for link in json.loads(host.run("ip", "-j", "link", "show").stdout)
            }
            assert (links["eth0"], links["flannel.1"]) == (1500, 1450)

        # a second site.yml on the deployed fleet changes nothing
        second = playbook(fleet, bundle, "site.yml")
        assert second.returncode == 0, second.stdout
        assert {h: c["changed"] for h, c in recap(second.stdout).items()} == dict.fromkeys(
            K8S_HOSTS, 0
        )

        with servers(fleet, WEB_PODS, 8080):
            checks = playbook(fleet, bundle, "check.yml")
            assert checks.returncode == 0, checks.stdout
            assert (
                '"msg": "alpha: 2 passed, 0 failed; beta: 2 passed, 0 failed; '
                'gamma: 2 passed, 0 failed"' in checks.stdout
            )
            # the ClusterIP from a pod on beta reaches pods on all three hosts, keeping its source
            answered: set[str] = set()
            for _ in range(40):
                name, seen = fetch(fleet.hosts["beta"], "client-b", "http://10.96.0.10/")
                assert seen == "10.244.1.3"
                answered.add(name)
                if len(answered) == 3:
                    break
            assert answered == {"web-a", "web-b", "web-c"}
            # the NodePort on alpha, from outside the cluster (the underlay's gateway)
            result = subprocess.run(
                ["curl", "-s", "--max-time", "3", "http://192.0.2.1:30080/"],
                capture_output=True,
                text=True,
                timeout=10,
            )
            assert result.stdout.split()[0] in {"web-a", "web-b", "web-c"}, result

        down = playbook(fleet, bundle, "teardown.yml")
        assert down.returncode == 0, down.stdout
        assert_restored(fleet, before)
        again = playbook(fleet, bundle, "teardown.yml")
        assert again.returncode == 0, again.stdout
        assert {h: c["changed"] for h, c in recap(again.stdout).items()} == dict.fromkeys(
            K8S_HOSTS, 0
        )


@sandboxed
def test_a_fault_on_the_second_host_rolls_every_host_back(tmp_path: Path) -> None:
    with fleet_of(tmp_path, K8S_HOSTS) as fleet:
        _, bundle = reachable(fleet, example(), tmp_path)
        before = snapshots(fleet)
        beta = fleet.hosts["beta"]

        fleet.break_host(beta, fail_at=4)
        failed = playbook(fleet, bundle, "site.yml")
        fleet.mend_host(beta)
        assert failed.returncode != 0
        message = re.search(r'"msg": "(setup failed on .*)"', failed.stdout)
        assert message, failed.stdout
        assert re.fullmatch(
            r"setup failed on beta, step [0-9]+/10 \(.+\) failed with exit status 2; rolled back "
            r"every host where setup ran: alpha, beta, gamma",
            message[1],
        ), message[1]
        assert_restored(fleet, before)

        # a host that is not ready stops the fleet in preflight, before any host changes
        gamma = fleet.hosts["gamma"]
        gamma.run("ip", "link", "add", "cni0", "type", "bridge")
        refused = playbook(fleet, bundle, "site.yml")
        assert refused.returncode != 0
        assert "link cni0 already exists in the root namespace" in refused.stdout
        assert "PLAY [Set up" not in refused.stdout
        gamma.run("ip", "link", "delete", "cni0")
        assert_restored(fleet, before)


@sandboxed
def test_a_docker_overlay_on_two_hosts_with_nsgen_up_and_down(tmp_path: Path) -> None:
    with fleet_of(tmp_path, {"alpha": "192.0.2.1", "beta": "192.0.2.2"}) as fleet:
        path, bundle = reachable(fleet, docker(), tmp_path)
        before = snapshots(fleet)
        nsgen = str(BIN / "nsgen")

        up = subprocess.run(
            [nsgen, "up", str(path)], capture_output=True, text=True, env=fleet.env(), timeout=300
        )
        assert up.returncode == 0, up.stdout + up.stderr
        assert re.search(
            r"^nsgen: \S*ansible-playbook -i \S+/ansible/inventory.yml \S+/site.yml$",
            up.stderr,
            re.MULTILINE,
        ), up.stderr
        assert {h: c["failed"] for h, c in recap(up.stdout).items()} == {"alpha": 0, "beta": 0}

        with servers(fleet, {"alpha": ["web"]}, 80):
            checks = playbook(fleet, bundle, "check.yml")
            assert checks.returncode == 0, checks.stdout
            assert '"msg": "alpha: 3 passed, 0 failed; beta: 6 passed, 0 failed"' in checks.stdout
            # across the overlay the container sees its peer's own address (no masquerade) ...
            assert fetch(fleet.hosts["beta"], "client", "http://web/") == ["web", "10.20.0.3"]
            # ... and through the published port on alpha, beta's address (masqueraded by beta)
            assert fetch(fleet.hosts["beta"], "client", "http://192.0.2.1:8080/") == [
                "web",
                "192.0.2.2",
            ]

        down = subprocess.run(
            [nsgen, "down", str(path)], capture_output=True, text=True, env=fleet.env(), timeout=300
        )
        assert down.returncode == 0, down.stdout + down.stderr
        assert_restored(fleet, before)


def test_in_host_gw_mode_routes_to_other_nodes_go_via_their_hosts(tmp_path: Path) -> None:
    data = example()
    data["cluster"]["mode"] = "host-gw"
    _, fleet = load(write(tmp_path, data))
    assert fleet is not None
    beta = fleet.parts[1].topology
    assert [(r.to, r.via, r.dev) for r in beta.host.routes] == [
        ("10.244.0.0/24", "192.0.2.1", "eth0"),
        ("10.244.2.0/24", "192.0.2.3", "eth0"),
    ]
    assert not beta.host.vxlans


def test_icc_false_drops_a_networks_traffic_through_its_tunnel_too(tmp_path: Path) -> None:
    data = docker()
    data["networks"]["app"]["icc"] = False
    _, fleet = load(write(tmp_path, data))
    assert fleet is not None
    rules = [rule_text(r) for r in fleet.parts[0].topology.host.iptables.rules]
    assert "filter NSGEN-dock-FWD -i br-app -o vx-4096 -j DROP" in rules
    assert "filter NSGEN-dock-FWD -i vx-4096 -o br-app -j DROP" in rules
    assert not any("-o vx-4096 -j RETURN" in r for r in rules if " POSTROUTING " not in r)
