"""Machines for the multi-host tests, on one machine: inside the test's sandbox, each "host" is
a network namespace with a private mount namespace (its own /run, so its own /run/netns and
/run/nsgen, and its own /etc/netns), held open by a keeper process, cabled to an underlay
bridge on 192.0.2.0/24, and running its own sshd (Debian's openssh-server) on its underlay
address only. Ansible, in the sandbox's root namespace, reaches the hosts over ssh with a key
the test generates (host keys are not checked; known_hosts lives in the test's tmp).

Every process here (keepers, sshd) is started by the test and stopped by it, by PID. Nothing
here runs outside a sandbox: `Fleet.__init__` calls require_sandbox() first.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nsgen.sandbox import require_sandbox
from tests.faults import install_stand_ins

UNDERLAY_BRIDGE = "underlay"
UNDERLAY_GATEWAY = "192.0.2.254"
"""The sandbox's root namespace on the underlay: where Ansible connects from."""
SSHD = "/usr/sbin/sshd"

# A host's private /run and /etc/netns, then it waits to be stopped (bounded: 30 minutes).
_KEEPER = """
set -e
mount -t tmpfs -o mode=0755 nsgen-fleet-host /run
mkdir -p /run/netns /run/nsgen /run/sshd
mount -t tmpfs -o mode=0755 nsgen-fleet-host /etc/netns
ip link set lo up
echo ready
exec sleep 1800
"""


def _run(*argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr}")
    return result


def _stop(process: subprocess.Popen[Any] | None) -> None:
    """Stop one process this module started, by its PID, and reap it."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@dataclass
class Host:
    """One machine of the fleet: its namespaces are those of `keeper`."""

    name: str
    address: str
    keeper: subprocess.Popen[str]
    sshd: subprocess.Popen[bytes] | None = None
    fault_dir: Path | None = None

    @property
    def pid(self) -> int:
        return self.keeper.pid

    def enter(self) -> list[str]:
        """The argv prefix that runs a command inside this host (network and mount namespace)."""
        return ["nsenter", "-t", str(self.pid), "-n", "-m"]

    def run(
        self, *argv: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return _run(*self.enter(), *argv, check=check, timeout=timeout)

    def snapshot(self) -> dict[str, Any]:
        """nsgen.snapshot.take_snapshot(), taken inside this host."""
        code = "import json; from nsgen.snapshot import take_snapshot; print(json.dumps(take_snapshot()))"
        result = self.run(sys.executable, "-c", code)
        return json.loads(result.stdout)  # type: ignore[no-any-return]


@dataclass
class Fleet:
    """Hosts on an underlay bridge, each with sshd; `tmp` holds keys, configs and logs."""

    tmp: Path
    hosts: dict[str, Host] = field(default_factory=dict)

    def __post_init__(self) -> None:
        require_sandbox()
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.key = self.tmp / "id_ed25519"
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key))
        (self.tmp / "authorized_keys").write_text(Path(f"{self.key}.pub").read_text())
        self.host_key = self.tmp / "ssh_host_ed25519_key"
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.host_key))
        for argv in (
            ["ip", "link", "add", UNDERLAY_BRIDGE, "type", "bridge"],
            ["ip", "link", "set", UNDERLAY_BRIDGE, "addrgenmode", "none"],
            ["ip", "addr", "add", f"{UNDERLAY_GATEWAY}/24", "dev", UNDERLAY_BRIDGE],
            ["ip", "link", "set", UNDERLAY_BRIDGE, "up"],
        ):
            _run(*argv)

    def add_host(self, name: str, address: str) -> Host:
        """A new machine at `address` on the underlay, its uplink called eth0, with sshd."""
        keeper = subprocess.Popen(
            [
                "unshare",
                "--net",
                "--mount",
                "--propagation",
                "private",
                "--",
                "bash",
                "-c",
                _KEEPER,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        host = Host(name, address, keeper)
        self.hosts[name] = host
        assert keeper.stdout is not None
        if keeper.stdout.readline().strip() != "ready":
            _stop(keeper)
            raise AssertionError(
                f"host {name} did not start: {keeper.stderr.read() if keeper.stderr else ''}"
            )
        outside = f"u-{name}"
        _run(
            "ip",
            "link",
            "add",
            outside,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            str(keeper.pid),
        )
        for argv in (
            ["ip", "link", "set", outside, "addrgenmode", "none"],
            ["ip", "link", "set", outside, "master", UNDERLAY_BRIDGE],
            ["ip", "link", "set", outside, "up"],
        ):
            _run(*argv)
        for argv in (
            ["ip", "link", "set", "eth0", "addrgenmode", "none"],
            ["ip", "addr", "add", f"{address}/24", "dev", "eth0"],
            ["ip", "link", "set", "eth0", "up"],
            ["ip", "route", "add", "default", "via", UNDERLAY_GATEWAY],
        ):
            host.run(*argv)
        self.start_sshd(host)
        return host

    def start_sshd(self, host: Host) -> None:
        """sshd in the host's namespaces, listening on its underlay address only."""
        config = self.tmp / f"sshd_config.{host.name}"
        config.write_text(
            f"ListenAddress {host.address}:22\n"
            f"HostKey {self.host_key}\n"
            f"AuthorizedKeysFile {self.tmp / 'authorized_keys'}\n"
            "PermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            "StrictModes no\n"
            "PidFile none\n"
            "Subsystem sftp internal-sftp\n"
        )
        log = open(self.tmp / f"sshd.{host.name}.log", "ab")  # noqa: SIM115 (kept by the process)
        host.sshd = subprocess.Popen(
            [*host.enter(), SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=log
        )
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((host.address, 22), timeout=0.5):
                    return
            except OSError:
                if host.sshd.poll() is not None:
                    break
                time.sleep(0.05)
        raise AssertionError(
            f"sshd of {host.name} is not answering: "
            + (self.tmp / f"sshd.{host.name}.log").read_text()
        )

    def ansible(self) -> dict[str, Any]:
        """The `ansible:` connection spec of a host in this fleet (for a topology file)."""
        return {
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.key),
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no "
            f"-o UserKnownHostsFile={self.tmp / 'known_hosts'}",
            "ansible_python_interpreter": "/usr/bin/python3",
        }

    @property
    def control_dir(self) -> Path:
        return self.tmp / "cp"

    def env(self) -> dict[str, str]:
        """The environment for ansible-playbook: its files in tmp; its ssh master connections
        (one per host, reused by every task) have their sockets there too, and close()
        stops them."""
        home = self.tmp / "ansible-home"
        return {
            **os.environ,
            "ANSIBLE_HOME": str(home),
            "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
            "ANSIBLE_REMOTE_TEMP": str(self.tmp / "ansible-remote"),
            "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=300s",
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.control_dir),
            "ANSIBLE_SSH_CONTROL_PATH": "%(directory)s/%%h",
            "ANSIBLE_PIPELINING": "1",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
        }

    def break_host(self, host: Host, fail_at: int) -> None:
        """Fault injection on one host: tests/faults.py's stand-ins for ip, bridge, iptables and
        iptables-restore, bind-mounted over /usr/local/sbin (first on sshd's PATH) inside that
        host only, each failing the host's `fail_at`-th state-changing call."""
        stand_ins = self.tmp / f"stand-ins.{host.name}"
        env = install_stand_ins(stand_ins)
        wrappers = self.tmp / f"wrappers.{host.name}"
        wrappers.mkdir(exist_ok=True)
        counter = env["NSGEN_FAULT_COUNTER"]
        Path(counter).unlink(missing_ok=True)
        for name in ("ip", "bridge", "iptables", "iptables-restore"):
            wrapper = wrappers / name
            wrapper.write_text(
                "#!/bin/bash\n"
                f"export NSGEN_FAULT_COUNTER={counter} NSGEN_FAIL_AT={fail_at}\n"
                f'exec {stand_ins / name} "$@"\n'
            )
            wrapper.chmod(0o755)
        host.run("mount", "--bind", str(wrappers), "/usr/local/sbin")
        host.fault_dir = stand_ins

    def mend_host(self, host: Host) -> None:
        """Undo break_host."""
        if host.fault_dir is not None:
            host.run("umount", "/usr/local/sbin")
            host.fault_dir = None

    def stop_ssh_masters(self) -> None:
        """Stop the ssh master connections Ansible left (ControlPersist), each by its PID, which
        `ssh -O check` reports."""
        for host in self.hosts.values():
            socket_path = self.control_dir / host.address
            if not socket_path.exists():
                continue
            check = _run(
                "ssh", "-o", f"ControlPath={socket_path}", "-O", "check", host.address, check=False
            )
            found = re.search(r"pid=([0-9]+)", check.stderr)
            if found:
                pid = int(found[1])
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                    time.sleep(0.02)
            socket_path.unlink(missing_ok=True)

    def close(self) -> None:
        """Stop every process this fleet started (ssh masters, sshd, keepers), by PID."""
        self.stop_ssh_masters()
        for host in self.hosts.values():
            _stop(host.sshd)
            _stop(host.keeper)
        shutil.rmtree(self.tmp / "ansible-remote", ignore_errors=True)
