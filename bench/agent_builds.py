#!/usr/bin/env python3
"""Agent builds side by side: resident memory and CPU of several agent binaries doing the
same work, one after the other, in rounds (to see the noise).

Usage: python3 bench/agent_builds.py [--containers 50] [--seconds 40] [--rounds 2] BINARY...

Starts N idle test containers; runs each binary with `--output stdout --stats-source cgroup
--stats-interval 1s --usage-interval off` for 5 s of start-up plus the measured seconds, then
reads its CPU (/proc/<pid>/stat) and VmRSS/VmHWM (/proc/<pid>/status). Prints a Markdown
table. Run it on an otherwise idle machine.
"""

import argparse
import os
import subprocess
import time

from procstat import cpu_seconds, start_containers, status_kib


def measure(binary, seconds):
    proc = subprocess.Popen(
        [binary, "--output", "stdout", "--stats-source", "cgroup", "--stats-interval", "1s",
         "--usage-interval", "off"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(5)  # start-up (inventory snapshot) is not the steady state being measured
        c0 = cpu_seconds(proc.pid)
        time.sleep(seconds)
        cpu = (cpu_seconds(proc.pid) - c0) / seconds * 100
        return cpu, status_kib(proc.pid, "VmRSS") / 1024, status_kib(proc.pid, "VmHWM") / 1024
    finally:
        proc.terminate()
        proc.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--containers", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("binaries", nargs="+")
    args = parser.parse_args()
    names = start_containers(args.containers, "agentbuilds")
    results = {binary: [] for binary in args.binaries}
    try:
        for _ in range(args.rounds):
            for binary in args.binaries:
                results[binary].append(measure(binary, args.seconds))
    finally:
        subprocess.run(["docker", "rm", "-f", *names], capture_output=True)
    print(f"{args.containers} containers, 1 s sweeps, {args.seconds} s measured per round\n")
    print("| binary | size | RSS per round (peak) | agent CPU per round (% of a core) |")
    print("|---|---|---|---|")
    for binary, rounds in results.items():
        size = os.path.getsize(binary) / 1e6
        rss = " / ".join(f"{r:.1f} ({h:.1f}) MiB" for _, r, h in rounds)
        cpu = " / ".join(f"{c:.2f} %" for c, _, _ in rounds)
        print(f"| `{binary}` | {size:.1f} MB | {rss} | {cpu} |")


if __name__ == "__main__":
    main()
