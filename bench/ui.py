#!/usr/bin/env python3
"""Web UI benchmark, in headless Chromium (Debian's chromium + chromium-driver, driven by
selenium): the UI's transfer size, the time to first render of the fleet page with a small
fleet (the baseline) and with a 1,000-container fleet, and the page's JavaScript heap and
DOM size over a long live profile at 1 Hz.

Usage (release binaries; selenium and websockets in a venv; Docker with the local test image):
  bash scripts/test-image.sh
  cargo build --profile agent -p dockermon-agent
  cargo build --release -p dockermon-collector -p dockermon-e2e --bin dockermon-collector --bin fleet
  python3 -m venv target/py-bench && target/py-bench/bin/pip install websockets selenium
  target/py-bench/bin/python bench/ui.py [--containers 1000] [--runs 7] [--profile-minutes 10]

Runs a real collector (embedded SQLite) and a real agent with 10 idle test containers and
one spinning one (profiler.py's Fleet), then simulated agents (target/release/fleet, real
TLS) for the rest of the fleet. Each load is a fresh navigation with the browser cache
disabled: time to first render is `performance.mark('fleet-rendered')` (set when the
container list first shows), measured from navigation start, session restore through the
refresh cookie included. Heap is `performance.memory.usedJSHeapSize` after a forced GC.
Prints Markdown tables.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
except ImportError:
    sys.exit("ui.py needs selenium: pip install selenium")

sys.path.insert(0, os.path.dirname(__file__))
from procstat import start_containers  # noqa: E402
from profiler import Fleet  # noqa: E402

IMAGE = "dockermon-test/busybox:latest"


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--enable-precise-memory-info", "--js-flags=--expose-gc"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
    return driver


def wait(driver, script, what, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.05)
    sys.exit(f"ui.py: {what} did not happen")


def sign_in(driver, base, password):
    driver.get(f"{base}/#/signin")
    wait(driver, "return !!document.querySelector('#email')", "the sign-in page")
    driver.find_element(By.ID, "email").send_keys("admin@localhost")
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "sign-in").click()
    wait(driver, "return !!document.querySelector('#who-email')", "signing in")


def load_fleet(driver, base, run):
    """One cold load of the fleet page: (ms to first render, UI bytes on the wire, gzip bodies)."""
    driver.get(f"{base}/?load={run}#/fleet")
    rendered = wait(driver, "const m = performance.getEntriesByName('fleet-rendered')[0]; return m && m.startTime",
                    "the fleet page")
    sizes = driver.execute_script("""
        const ui = [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')]
          .filter(e => !e.name.includes('/api/') && !e.name.includes('/ws'));
        return [ui.reduce((s, e) => s + e.transferSize, 0), ui.reduce((s, e) => s + e.encodedBodySize, 0), ui.length];""")
    return rendered, sizes


def fleet_loads(driver, base, runs):
    load_fleet(driver, base, "warm")  # the collector's first answers warm its caches
    results = [load_fleet(driver, base, run) for run in range(runs)]
    return statistics.median(r[0] for r in results), results[-1][1]


def total_containers(api):
    return api.call("GET", "/api/v1/containers?limit=1")["total"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collector", default="target/release/dockermon-collector")
    parser.add_argument("--agent", default="target/agent/dockermon-agent")
    parser.add_argument("--fleet", default="target/release/fleet")
    parser.add_argument("--containers", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--profile-minutes", type=int, default=10)
    args = parser.parse_args()

    names = start_containers(10, "dmui")
    subprocess.run(["docker", "rm", "-f", "dmui-spin"], capture_output=True)
    subprocess.run(["docker", "run", "-d", "--name", "dmui-spin", IMAGE, "sh", "-c", "while :; do :; done"],
                   check=True, capture_output=True)
    fleet = Fleet(args.collector, args.agent, 4, "auto")
    generator = None
    driver = browser()
    try:
        base = f"http://127.0.0.1:{fleet.ports['api']}"
        spin = fleet.container_ids(["dmui-spin"])[0]
        fleet.container_ids(names)
        sign_in(driver, base, fleet.password)
        small = total_containers(fleet.api)
        small_ms, (wire, bodies, files) = fleet_loads(driver, base, args.runs)

        agents = max(1, -(-(args.containers - small) // 50))  # rounded up
        generator = subprocess.Popen(
            [args.fleet, "--collector", f"127.0.0.1:{fleet.ports['agent']}",
             "--pki-dir", os.path.join(fleet.dir, "collector", "pki"), "--agents", str(agents),
             "--containers", "50", "--duration", "3600s"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        fleet.wait(lambda: total_containers(fleet.api) >= small + agents * 50, "the simulated fleet", timeout=120)
        large = total_containers(fleet.api)
        large_ms, _ = fleet_loads(driver, base, args.runs)
        os.makedirs("target/screenshots", exist_ok=True)
        driver.save_screenshot("target/screenshots/bench-fleet.png")

        print("| UI transfer (first load, cache disabled) | bytes |")
        print("|---|---:|")
        print(f"| on the wire, {files} files (headers included) | {wire:,} |")
        print(f"| bodies (gzip) | {bodies:,} |")
        print()
        print(f"| fleet page, first render (median of {args.runs} cold loads) | ms |")
        print("|---|---:|")
        print(f"| {small:,} containers (baseline) | {small_ms:.0f} |")
        print(f"| {large:,} containers | {large_ms:.0f} |")
        print(f"| ratio | {large_ms / small_ms:.2f} |")
        print()

        driver.get(f"{base}/#/profiler/live/{spin}")
        wait(driver, "return !!document.querySelector('#start-profile')", "the profiler page")
        driver.find_element(By.ID, "start-profile").click()
        wait(driver, "return Number(document.querySelector('#live-charts .chart svg')?.dataset.points) >= 5",
             "the live profile")
        print("| live profile at 1 Hz, minute | JS heap after GC (KiB) | DOM nodes | points drawn |")
        print("|---:|---:|---:|---:|")
        for minute in range(1, args.profile_minutes + 1):
            time.sleep(60)
            heap, nodes, points = driver.execute_script("""
                window.gc();
                return [performance.memory.usedJSHeapSize, document.getElementsByTagName('*').length,
                        Number(document.querySelector('#live-charts .chart svg').dataset.points)];""")
            print(f"| {minute} | {heap / 1024:,.0f} | {nodes:,} | {points} |", flush=True)
        driver.save_screenshot("target/screenshots/bench-profile-live.png")
    finally:
        driver.quit()
        if generator:
            generator.terminate()
            generator.wait(timeout=20)
        fleet.stop()
        subprocess.run(["docker", "rm", "-f", *names, "dmui-spin"], capture_output=True)


if __name__ == "__main__":
    main()
