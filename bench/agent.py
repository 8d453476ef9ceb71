#!/usr/bin/env python3
"""Agent cost benchmark: the agent's CPU and memory, and the CPU dockerd spends serving it,
reading counters from cgroup files (`--stats-source cgroup`) and from Docker's stats API
(`--stats-source docker`), side by side with `docker stats --no-stream` run at the same
cadence (the baseline).

Usage: python3 bench/agent.py [--containers 50] [--slow-interval 30] [--slow-seconds 300]
                               [--fast-seconds 60] [--agent target/agent/dockermon-agent]

Starts N idle test containers, then measures, one after the other, each for the same
wall time: dockerd alone (idle baseline), the agent with each source at the slow and fast
intervals, and `docker stats --no-stream` at the same two intervals. CPU comes from /proc/<pid>/stat
(utime+stime, children included for the CLI baseline); RSS from /proc/<pid>/status.
Prints a Markdown table. Run it on an otherwise idle machine.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

from procstat import cpu_seconds, dockerd_pid, start_containers, status_kib


def measure_idle(seconds):
    dockerd = dockerd_pid()
    d0 = cpu_seconds(dockerd)
    time.sleep(seconds)
    return {"dockerd_cpu_pct": (cpu_seconds(dockerd) - d0) / seconds * 100}


def measure_agent(agent, source, interval, seconds):
    dockerd = dockerd_pid()
    proc = subprocess.Popen(
        [agent, "--output", "stdout", "--stats-source", source,
         "--stats-interval", f"{interval}s", "--usage-interval", "off",
         "--log", "dockermon_agent::stats=debug,warn", "--log-format", "json"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    sweeps = []

    def read_logs():
        for line in proc.stderr:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            fields = entry.get("fields", {})
            if fields.get("message") == "stats sweep done" and fields.get("sampled"):
                sweeps.append(float(fields["elapsed_ms"]))

    reader = threading.Thread(target=read_logs, daemon=True)
    reader.start()
    time.sleep(3)  # start-up (inventory snapshot) is not the steady state being measured
    a0, d0, t0 = cpu_seconds(proc.pid), cpu_seconds(dockerd), time.monotonic()
    time.sleep(seconds)
    a1, d1, t1 = cpu_seconds(proc.pid), cpu_seconds(dockerd), time.monotonic()
    rss = status_kib(proc.pid, "VmRSS")
    hwm = status_kib(proc.pid, "VmHWM")
    proc.terminate()
    proc.wait(timeout=15)
    elapsed = t1 - t0
    return {
        "client_cpu_pct": (a1 - a0) / elapsed * 100,
        "dockerd_cpu_pct": (d1 - d0) / elapsed * 100,
        "rss_mib": rss / 1024,
        "peak_rss_mib": hwm / 1024,
        "sweep_ms_median": statistics.median(sweeps) if sweeps else float("nan"),
        "sweep_ms_max": max(sweeps) if sweeps else float("nan"),
        "sweeps": len(sweeps),
    }


def measure_docker_stats(interval, seconds):
    """`docker stats --no-stream` every `interval` seconds, like a cron-driven poller."""
    dockerd = dockerd_pid()
    me = os.getpid()
    c0, d0, t0 = cpu_seconds(me, children=True), cpu_seconds(dockerd), time.monotonic()
    walls = []
    next_run = t0
    while time.monotonic() - t0 < seconds:
        started = time.monotonic()
        subprocess.run(["docker", "stats", "--no-stream", "--format", "{{.ID}} {{.CPUPerc}}"],
                       check=True, capture_output=True)
        walls.append((time.monotonic() - started) * 1000)
        next_run += interval
        time.sleep(max(0.0, next_run - time.monotonic()))
    c1, d1, t1 = cpu_seconds(me, children=True), cpu_seconds(dockerd), time.monotonic()
    elapsed = t1 - t0
    return {
        "client_cpu_pct": (c1 - c0) / elapsed * 100,
        "dockerd_cpu_pct": (d1 - d0) / elapsed * 100,
        "sweep_ms_median": statistics.median(walls),
        "sweep_ms_max": max(walls),
        "sweeps": len(walls),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--containers", type=int, default=50)
    parser.add_argument("--slow-interval", type=int, default=30)
    parser.add_argument("--slow-seconds", type=int, default=300)
    parser.add_argument("--fast-seconds", type=int, default=60)
    parser.add_argument("--agent", default="target/agent/dockermon-agent")
    args = parser.parse_args()

    names = start_containers(args.containers, "dmbench")
    try:
        time.sleep(5)
        results = []
        for interval, seconds in ((args.slow_interval, args.slow_seconds), (1, args.fast_seconds)):
            idle = measure_idle(seconds)
            rows = [(f"dockermon-agent, {source}", measure_agent(args.agent, source, interval, seconds))
                    for source in ("cgroup", "docker")]
            rows.append(("docker stats --no-stream", measure_docker_stats(interval, seconds)))
            results.append((interval, seconds, idle, rows))
    finally:
        subprocess.run(["docker", "rm", "-f", *names], capture_output=True)

    print(f"{args.containers} running containers, {os.cpu_count()} CPUs\n")
    print("| interval | measured | what | client CPU (% of a core) | dockerd CPU above idle | RSS (peak) | sweep wall median / max | sweeps |")
    print("|---|---|---|---|---|---|---|---|")
    for interval, seconds, idle, rows in results:
        for label, r in rows:
            rss = f"{r['rss_mib']:.1f} MiB ({r['peak_rss_mib']:.1f})" if "rss_mib" in r else "–"
            print(f"| {interval} s | {seconds} s | {label} | {r['client_cpu_pct']:.2f} % | "
                  f"{r['dockerd_cpu_pct'] - idle['dockerd_cpu_pct']:.2f} % "
                  f"(raw {r['dockerd_cpu_pct']:.2f} %, idle {idle['dockerd_cpu_pct']:.2f} %) | {rss} | "
                  f"{r['sweep_ms_median']:.0f} / {r['sweep_ms_max']:.0f} ms | {r['sweeps']} |")


if __name__ == "__main__":
    sys.exit(main())
