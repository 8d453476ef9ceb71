#!/usr/bin/env python3
"""Profiler benchmark: how fast a profile sample reaches a WebSocket watcher, for one watcher
and for 100 on the same session, and what 20 concurrent profiles cost the agent and dockerd,
side by side with 20 `docker stats <container>` streaming clients (the baseline).

Usage (release binaries; needs the `websockets` package, e.g. in a venv):
  cargo build --profile agent -p dockermon-agent && cargo build --release -p dockermon-collector
  python3 -m venv target/py-bench && target/py-bench/bin/pip install websockets
  target/py-bench/bin/python bench/profiler.py [--profiles 20] [--seconds 60] [--watchers 100]

Runs a real collector (`serve`, embedded SQLite in a temporary directory) and a real agent
enrolled with a join token, all on loopback, and N idle test containers. Latency is the
time from the agent having a sample in hand (`read_ns` in each `profile` message) to the
watcher receiving it. CPU comes from /proc/<pid>/stat, RSS from /proc/<pid>/status; dockerd's
figure is its CPU over the period minus its CPU over the same period with nothing attached.
Prints Markdown tables. Run it on an otherwise idle machine.
"""

import argparse
import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

try:
    import websockets
except ImportError:
    sys.exit("profiler.py needs the websockets package: pip install websockets")

from procstat import cpu_seconds, dockerd_pid, start_containers, status_kib


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


class Api:
    def __init__(self, address):
        self.address = address
        self.token = None

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"http://{self.address}{path}", data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=30) as answer:
            text = answer.read()
            return json.loads(text) if text else None


class Fleet:
    """A collector and one agent, on loopback, in a temporary directory."""

    def __init__(self, collector, agent, max_profiles, stats_source):
        self.dir = tempfile.mkdtemp(prefix="dmbench-")
        self.ports = {name: free_port() for name in ("api", "ws", "agent", "health")}
        self.password = secrets.token_urlsafe(18)
        data = os.path.join(self.dir, "collector")
        subprocess.run([collector, "pki", "init", "--data-dir", data, "--san", "localhost"],
                       check=True, capture_output=True)
        env = dict(os.environ, DOCKERMON_ADMIN_PASSWORD=self.password)
        self.collector = subprocess.Popen(
            [collector, "serve", "--data-dir", data, "--log", "warn",
             "--api-listen", f"127.0.0.1:{self.ports['api']}",
             "--ws-listen", f"127.0.0.1:{self.ports['ws']}",
             "--agent-listen", f"127.0.0.1:{self.ports['agent']}",
             "--health-listen", f"127.0.0.1:{self.ports['health']}",
             "--agent-usage-interval", "off",
             "--profile-max-per-host", str(max_profiles), "--profile-max-per-user", str(max_profiles)],
            env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.dir, "collector.log"), "w"))
        self.api = Api(f"127.0.0.1:{self.ports['api']}")
        self.wait(lambda: self.api.call("GET", "/api/v1/openapi.json"), "the collector")
        self.api.token = self.api.call("POST", "/api/v1/auth/login",
                                       {"email": "admin@localhost", "password": self.password})["access_token"]
        token = subprocess.check_output(
            [collector, "token", "create", "--host", "bench", "--data-dir", data], text=True).strip()
        self.agent = subprocess.Popen(
            [agent, "--collector", f"wss://localhost:{self.ports['agent']}", "--join-token", token,
             "--state-dir", os.path.join(self.dir, "agent"), "--max-profiles", str(max_profiles),
             "--stats-source", stats_source, "--log", "warn"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.dir, "agent.log"), "w"))
        self.wait(lambda: any(h["connected"] for h in self.api.call("GET", "/api/v1/hosts")["items"]), "the agent")

    @staticmethod
    def wait(check, what, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if check():
                    return
            except Exception:
                pass
            time.sleep(0.2)
        sys.exit(f"profiler.py: {what} did not come up")

    def container_ids(self, names):
        ids = {}

        def known():
            for name in names:
                if name not in ids:
                    items = self.api.call("GET", f"/api/v1/containers?name={name}")["items"]
                    if items and items[0]["state"] == "running":
                        ids[name] = items[0]["id"]
            return len(ids) == len(names)

        self.wait(known, "the containers in the API")
        return [ids[name] for name in names]

    def stop(self):
        for process in (self.agent, self.collector):
            process.terminate()
            process.wait(timeout=20)


async def watch(ws_address, token, container, samples, latencies):
    """Subscribes to a container's profile and records the latency of `samples` samples."""
    async with websockets.connect(f"ws://{ws_address}/ws", max_queue=None) as ws:
        await ws.send(json.dumps({"type": "identify", "token": token}))
        await ws.send(json.dumps({"type": "subscribe", "topic": "profile", "container": container}))
        seen = 0
        async for text in ws:
            received = time.time_ns()
            message = json.loads(text)
            if message["type"] == "error":
                raise RuntimeError(message)
            if message["type"] != "profile":
                continue
            latencies.append((received - message["read_ns"]) / 1e6)
            seen += len(message["items"])
            if seen >= samples:
                return seen


async def watchers(fleet, container, count, samples):
    latencies = []
    address = f"127.0.0.1:{fleet.ports['ws']}"
    seen = await asyncio.gather(*(watch(address, fleet.api.token, container, samples, latencies)
                                  for _ in range(count)))
    return latencies, seen


def measure(seconds, pids, children=False):
    """CPU % of a core and peak RSS of `pids` (sampled every second) over `seconds`."""
    dockerd = dockerd_pid()
    d0 = cpu_seconds(dockerd)
    c0 = {pid: cpu_seconds(pid, children) for pid in pids}
    peak = 0
    end = time.time() + seconds
    while time.time() < end:
        time.sleep(1)
        peak = max([peak] + [status_kib(pid, "VmRSS") for pid in pids])
    cpu = sum(cpu_seconds(pid, children) - c0[pid] for pid in pids) / seconds * 100
    return {"dockerd": (cpu_seconds(dockerd) - d0) / seconds * 100, "client": cpu, "rss_kib": peak}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--collector", default="target/release/dockermon-collector")
    parser.add_argument("--agent", default="target/agent/dockermon-agent")
    parser.add_argument("--profiles", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--latency-samples", type=int, default=60)
    parser.add_argument("--stats-source", default="auto",
                        help="the agent's --stats-source: cgroup files (a timer per profile) or docker streams")
    args = parser.parse_args()

    names = start_containers(args.profiles, "dmbench-profile")
    fleet = Fleet(args.collector, args.agent, max(args.profiles, 8), args.stats_source)
    try:
        ids = fleet.container_ids(names)
        rows = []

        latencies, _ = asyncio.run(watchers(fleet, ids[0], 1, args.latency_samples))
        rows.append(("1 watcher", len(latencies), latencies))
        latencies, seen = asyncio.run(watchers(fleet, ids[1], args.watchers, 30))
        rows.append((f"{args.watchers} watchers on one profile", len(latencies), latencies))

        print("\n| delivery, agent has the sample → watcher receives it | messages | p50 | p99 | max |")
        print("|---|---|---|---|---|")
        for what, n, values in rows:
            print(f"| {what} | {n} | {percentile(values, 50):.2f} ms | {percentile(values, 99):.2f} ms "
                  f"| {max(values):.2f} ms |")
        print(f"\nEvery watcher received every sample: {all(s >= 30 for s in seen)} (per watcher: min {min(seen)})")

        # Wait for the WebSocket sessions above to end (no watchers), then the cost runs.
        Fleet.wait(lambda: fleet.api.call("GET", "/api/v1/profiles?state=running")["total"] == 0,
                   "the watched sessions to end", timeout=120)
        idle = measure(args.seconds, [])
        started = [fleet.api.call("POST", f"/api/v1/containers/{cid}/profiles", {"duration": 3600})["id"]
                   for cid in ids]
        time.sleep(3)
        profiled = measure(args.seconds, [fleet.agent.pid])
        for pid in started:
            fleet.api.call("DELETE", f"/api/v1/profiles/{pid}")
        baseline_procs = [subprocess.Popen(["docker", "stats", "--format", "{{.Name}} {{.CPUPerc}}", name],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                          for name in names]
        time.sleep(3)
        baseline = measure(args.seconds, [p.pid for p in baseline_procs], children=True)
        for p in baseline_procs:
            p.kill()  # `docker stats` does not end on SIGTERM while streaming
            p.wait()

        print(f"\n| {args.profiles} concurrent 1-second profiles, {args.seconds} s | client CPU (% of a core) "
              "| client RSS (peak) | dockerd CPU above idle |")
        print("|---|---|---|---|")
        print(f"| dockermon-agent (--stats-source {args.stats_source}) | {profiled['client']:.2f} % | {profiled['rss_kib'] / 1024:.1f} MiB "
              f"| {profiled['dockerd'] - idle['dockerd']:.2f} % |")
        print(f"| {args.profiles} × `docker stats <container>` (baseline) | {baseline['client']:.2f} % "
              f"| – | {baseline['dockerd'] - idle['dockerd']:.2f} % |")
        print(f"\ndockerd idle: {idle['dockerd']:.2f} % of a core")
    finally:
        fleet.stop()
        subprocess.run(["docker", "rm", "-f", *names], capture_output=True)


if __name__ == "__main__":
    main()
