"""What the benchmarks read from /proc and the Docker CLI: a process's CPU time and memory,
dockerd's pid, and idle test containers."""

import os
import subprocess

TICK = os.sysconf("SC_CLK_TCK")
IMAGE = "dockermon-test/busybox:latest"


def cpu_seconds(pid, children=False):
    """CPU time (user + system) of `pid` in seconds, with its waited-for children if asked."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[11..14] = utime stime cutime cstime (0-based after the comm field)
    total = int(fields[11]) + int(fields[12])
    if children:
        total += int(fields[13]) + int(fields[14])
    return total / TICK


def status_kib(pid, key):
    """A KiB figure from /proc/<pid>/status (VmRSS, VmHWM, …); 0 if absent."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def dockerd_pid():
    return int(subprocess.check_output(["pidof", "dockerd"]).split()[0])


def start_containers(n, prefix):
    """N idle test containers named <prefix>-000…, replacing any left from an earlier run."""
    names = [f"{prefix}-{i:03d}" for i in range(n)]
    subprocess.run(["docker", "rm", "-f", *names], capture_output=True)
    for name in names:
        subprocess.run(["docker", "run", "-d", "--name", name, IMAGE, "sleep", "86400"],
                       check=True, capture_output=True)
    return names
