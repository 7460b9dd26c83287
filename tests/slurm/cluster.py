"""A real single-node SLURM cluster for the tests: Debian's slurm-wlm and munge, started as root in a tmp dir.

Everything lives under one folder: a generated munge key and socket, slurm.conf with free ports, the
controller's state and the node's spool. The daemons run in the foreground of their own processes
(so we hold their pids) and are stopped by those pids. No accounting daemon: sacct fails and dmlbench
reads task states from squeue and the result files instead (see docs/scaling.md).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

BINARIES = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "sinfo", "squeue", "scancel")
PARTITION = "debug"


def missing_binaries() -> list[str]:
    return [name for name in BINARIES if shutil.which(name) is None]


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _node_line() -> str:
    """This host's `NodeName=... CPUs=... RealMemory=...`, as slurmd itself detects it."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    return out.splitlines()[0].strip()


@dataclass
class Cluster:
    root: Path
    conf: Path = field(init=False)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.conf = self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def _write_config(self) -> str:
        munge_dir = self.root / "munge"
        for sub in ("munge", "state", "spool", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        munge_dir.chmod(0o700)
        ctld_port, slurmd_port = _free_ports(2)
        node = _node_line()
        host = node.split()[0].split("=", 1)[1]
        (self.root / "plugstack.conf").write_text("")
        lines = [
            "ClusterName=dmlbench-test",
            f"SlurmctldHost={host}",
            f"SlurmctldPort={ctld_port}",
            f"SlurmdPort={slurmd_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={munge_dir / 'munge.socket'}",
            f"StateSaveLocation={self.root / 'state'}",
            f"SlurmdSpoolDir={self.root / 'spool'}",
            f"SlurmctldPidFile={self.root / 'slurmctld.pid'}",
            f"SlurmdPidFile={self.root / 'slurmd.pid'}",
            f"SlurmctldLogFile={self.root / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={self.root / 'log' / 'slurmd.log'}",
            f"PlugStackConfig={self.root / 'plugstack.conf'}",
            # No cgroups in this container: track processes by their parent pids, bind nothing.
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "SchedulerType=sched/backfill",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "ReturnToService=2",
            "MailProg=/bin/true",
            # Quick turnaround for tests: schedule and clean up finished jobs fast.
            "SchedulerParameters=sched_interval=2",
            "MinJobAge=300",
            "SlurmdTimeout=60",
            "InactiveLimit=0",
            "KillWait=5",
            f"{node} State=UNKNOWN",
            f"PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP",
        ]
        self.conf.write_text("\n".join(lines) + "\n")
        return host

    def _spawn(self, *args: str) -> subprocess.Popen[bytes]:
        log = (self.root / "log" / f"{Path(args[0]).name}.out").open("ab")
        process = subprocess.Popen(
            list(args), stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}, start_new_session=True
        )
        log.close()
        self.processes.append(process)
        return process

    def start(self, timeout: float = 60.0) -> None:
        self._write_config()
        munge = self.root / "munge"
        key = munge / "munge.key"
        subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True, capture_output=True)
        key.chmod(0o400)
        # -F: stay in the foreground (we hold the pid); --force: it refuses root and a tmp socket dir otherwise.
        self._spawn(
            "munged",
            "-F",
            "--force",
            f"--key-file={key}",
            f"--socket={munge / 'munge.socket'}",
            f"--pid-file={munge / 'munged.pid'}",
            f"--log-file={self.root / 'log' / 'munged.log'}",
            f"--seed-file={munge / 'munged.seed'}",
        )
        self._wait_for(lambda: (munge / "munge.socket").exists(), timeout, "munged did not create its socket")
        self._spawn("slurmctld", "-D", "-i", "-f", str(self.conf))
        self._spawn("slurmd", "-D", "-f", str(self.conf))
        self._wait_for(self._node_idle, timeout, "the node never became idle")

    def _node_idle(self) -> bool:
        done = subprocess.run(
            ["sinfo", "-h", "-p", PARTITION, "-o", "%T"],
            capture_output=True,
            text=True,
            env={**os.environ, **self.env},
            check=False,
        )
        return done.returncode == 0 and done.stdout.strip() == "idle"

    def _wait_for(self, ready: object, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if callable(ready) and ready():
                return
            dead = [p for p in self.processes if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{what}: {dead[0].args[0]} exited with {dead[0].returncode}; logs in {self.root}")
            time.sleep(0.5)
        raise RuntimeError(f"{what} within {timeout:.0f} s; logs in {self.root / 'log'}")

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in reversed(self.processes):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        self.processes.clear()
