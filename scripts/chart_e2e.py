#!/usr/bin/env python3
"""The Helm chart's pods, run on the local Docker engine as the chart configures them.

    chart_e2e.py --helm HELM --chart DIR --tag TAG --utility-image IMAGE

Renders the chart (default values, images tagged TAG, utilityImage IMAGE, the agents' state
directory in a scratch directory and the Docker socket's group of this machine), loads the
rendered objects into a stand-in Kubernetes API server (scripts/kube_standin.py: no real one
can run here), and starts, through scripts/pod_runner.py, the collector Deployment's pod
and the agent DaemonSet's pod for one node with the same images, command lines,
environment, mounts and security settings. Then it checks what a working install does:
- the collector becomes ready (its readiness probe), keeps its CA in the Secret it creates,
  and publishes the CA certificate in the ConfigMap the agents mount;
- the agent pod can only start once that ConfigMap exists (as the kubelet would hold it),
  then enrolls with its projected ServiceAccount token (a TokenReview for the chart's
  audience), connects, and reports this engine: the host is named after the node, a
  workload container started here shows up with CPU and memory figures;
- the operator holds its Lease and keeps the node's DockerHost, Connected;
- the chart's `helm test` pod passes;
- neither binary logs an error or a warning.
Prints what it checked; exits non-zero with the reason and the pods' logs otherwise.
"""

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kube_standin  # noqa: E402
from pod_runner import Node, Pod, PodError, docker  # noqa: E402

NAMESPACE = "dockermon"
RELEASE = "dockermon"
NODE = "node-e2e-1"


def plural(kind):
    lower = kind.lower()
    if lower.endswith("y"):
        return lower[:-1] + "ies"
    return lower + ("es" if lower.endswith(("s", "x")) else "s")


def wait(what, check, timeout, pods=()):
    """Polls check() until it returns something truthy; fails with `what` at the deadline,
    or at once when a pod's container has exited."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (OSError, ValueError, KeyError, urllib.error.URLError) as error:
            last = error
        for pod in pods:
            for index, _ in enumerate(pod.containers):
                if not pod.state(index)["Running"]:
                    raise PodError(f"{pod.containers[index]} exited while waiting for {what}")
        time.sleep(0.5)
    raise PodError(f"timed out after {timeout} s waiting for {what}" + (f" (last: {last})" if last else ""))


def http(url, body=None, token=None):
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read() or b"null")


def log_problems(text):
    """Lines at WARN or ERROR of a JSON log (log_format json, as the chart sets it)."""
    problems = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            problems.append(f"not a JSON log line: {line}")
            continue
        if record.get("level") in ("WARN", "ERROR"):
            problems.append(line)
    return problems


def certificates(workdir, host):
    """A CA and a server certificate for the stand-in API server at IP `host` (openssl)."""
    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=workdir)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "api-ca.key", "-out", "api-ca.crt", "-days", "1", "-subj", "/CN=kubernetes-ca")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "api.key", "-out", "api.csr", "-subj", "/CN=kube-apiserver")
    with open(os.path.join(workdir, "api.ext"), "w") as ext:
        ext.write(f"subjectAltName=IP:{host},DNS:kubernetes.default.svc\n"
                  "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "api.csr", "-CA", "api-ca.crt", "-CAkey", "api-ca.key",
            "-CAcreateserial", "-out", "api.crt", "-days", "1", "-extfile", "api.ext")
    return [os.path.join(workdir, name) for name in ("api-ca.crt", "api.crt", "api.key")]


def render(args, state_dir):
    socket_gid = os.stat("/var/run/docker.sock").st_gid
    repository, _, tag = args.utility_image.rpartition(":")
    values = [
        f"collector.image.tag={args.tag}", f"agents.image.tag={args.tag}",
        f"utilityImage.repository={repository}", f"utilityImage.tag={tag}",
        f"agents.stateDir={state_dir}", f"agents.docker.socketGid={socket_gid}",
        # A first stats sweep within seconds rather than the default 30.
        "collector.settings.agent_stats_interval=2s",
    ]
    output = subprocess.run([args.helm, "template", RELEASE, args.chart, "--namespace", NAMESPACE,
                             "--set", ",".join(values)], check=True, capture_output=True, text=True).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


def one(docs, kind, component=None):
    found = [d for d in docs if d["kind"] == kind and (component is None or
             d["metadata"]["labels"].get("app.kubernetes.io/component") == component)]
    if len(found) != 1:
        raise PodError(f"expected one {kind} {component or ''} in the rendered chart, found {len(found)}")
    return found[0]


def env_of(workload, name):
    container = workload["spec"]["template"]["spec"]["containers"][0]
    return next(v["value"] for v in container["env"] if v["name"] == name)


def scenario(args, workdir, network, cluster, node, checked):
    state_dir = os.path.join(workdir, "node-root", "var", "lib", "dockermon-agent")
    docs = render(args, state_dir)
    for doc in docs:
        if not doc["kind"].startswith("CustomResourceDefinition"):
            cluster.add(doc, plural(doc["kind"]), NAMESPACE if doc["kind"] not in (
                "ClusterRole", "ClusterRoleBinding") else None)
    services = [d for d in docs if d["kind"] == "Service"]
    deployment = one(docs, "Deployment", "collector")
    daemonset = one(docs, "DaemonSet", "agent")

    def pod(workload, name):
        template = workload["spec"]["template"]
        return Pod(node, NAMESPACE, name, template["spec"], template["metadata"]["labels"], services)

    collector = pod(deployment, f"{deployment['metadata']['name']}-7d4b9c-x2x5q")
    agent = pod(daemonset, f"{daemonset['metadata']['name']}-k8x2m")
    pods = [collector]
    try:
        # The agent pod cannot start before the collector published its CA ConfigMap.
        agent.start()
        raise PodError("the agent pod started before its CA ConfigMap existed")
    except PodError as error:
        if "ContainerCreating" not in str(error):
            raise
    agent = pod(daemonset, f"{daemonset['metadata']['name']}-q7r4t")
    collector.start()
    wait("the collector's readiness probe", lambda: http(collector.probe_url(0, "readinessProbe"))[0] == 200,
         90, pods)
    wait("the collector's liveness probe", lambda: http(collector.probe_url(0, "livenessProbe"))[0] == 200,
         10, pods)
    checked.append("the collector pod starts and both probes pass")

    pki_name = env_of(deployment, "DOCKERMON_PKI_SECRET")
    ca_name = env_of(deployment, "DOCKERMON_CA_CONFIG_MAP")
    pki = wait("the CA Secret", lambda: cluster.get("api/v1", NAMESPACE, "secrets", pki_name), 10, pods)
    if sorted(pki["data"]) != ["ca.crt", "ca.key", "server.crt", "server.key"]:
        raise PodError(f"Secret {pki_name} holds {sorted(pki['data'])}")
    published = wait("the CA ConfigMap", lambda: cluster.get("api/v1", NAMESPACE, "configmaps", ca_name), 10, pods)
    if published["data"] != {"ca.crt": base64.b64decode(pki["data"]["ca.crt"]).decode()}:
        raise PodError(f"ConfigMap {ca_name} is not the CA certificate of Secret {pki_name}: {published['data']}")
    checked.append(f"the collector keeps its CA in Secret {pki_name} and publishes ca.crt in ConfigMap {ca_name}")

    workload = f"dockermon-chart-e2e-workload-{os.getpid()}"
    docker("run", "-d", "--name", workload, "--label", "dockermon-chart-e2e=1", "--network", "none",
           args.utility_image, "sh", "-c", "while true; do :; done")
    agent.start()
    pods.append(agent)

    auth = one([d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"].endswith("-auth")], "Secret")
    password = base64.b64decode(auth["data"]["admin-password"]).decode()
    api = f"http://{collector.ip()}:3810/api/v1"
    _, login = http(f"{api}/auth/login", {"email": "admin@localhost", "password": password})
    token = login["access_token"]

    def connected_host():
        hosts = http(f"{api}/hosts", token=token)[1]["items"]
        return next((h for h in hosts if h["name"] == NODE and h["connected"]), None)
    host = wait(f"host {NODE} connected", connected_host, 60, pods)
    reviews = [r for r in cluster.token_reviews if r[1]]
    if not reviews or any(asked != ["dockermon"] for asked, _ in cluster.token_reviews):
        raise PodError(f"token reviews: {cluster.token_reviews}")
    checked.append(f"the agent pod enrolls with its projected token (TokenReview for audience dockermon) "
                   f"and connects as host {NODE}")

    def workload_with_stats():
        items = http(f"{api}/containers?host={host['id']}&limit=500", token=token)[1]["items"]
        mine = next((c for c in items if c["name"] == workload and c["state"] == "running"), None)
        if mine is None:
            return None
        points = http(f"{api}/containers/{mine['id']}/stats?resolution=raw", token=token)[1]["points"]
        busy = [p for p in points if (p["cpu_percent"] or {}).get("max", 0) > 10 and p["memory_usage_bytes"]]
        return busy or None
    samples = wait(f"CPU and memory figures of {workload}", workload_with_stats, 60, pods)
    checked.append(f"the agent reports this engine's containers: {workload} at "
                   f"{max(p['cpu_percent']['max'] for p in samples):.0f} % CPU")

    def docker_host():
        found = cluster.get("apis/dockermon.io/v1alpha1", None, "dockerhosts", NODE)
        conditions = ((found or {}).get("status") or {}).get("conditions") or []
        return found if any(c["type"] == "Connected" and c["status"] == "True" for c in conditions) else None
    wait(f"DockerHost {NODE} Connected", docker_host, 60, pods)
    lease = cluster.get("apis/coordination.k8s.io/v1", NAMESPACE, "leases", "dockermon-operator")
    if not lease or not lease["spec"].get("holderIdentity"):
        raise PodError(f"the operator holds no Lease: {lease}")
    checked.append(f"the operator holds its Lease and keeps DockerHost {NODE} Connected")

    test = next(d for d in docs if d["kind"] == "Pod" and
                d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test")
    helm_test = Pod(node, NAMESPACE, test["metadata"]["name"], test["spec"], test["metadata"].get("labels", {}),
                    services).start()
    status = wait("the helm test pod", lambda: (s := helm_test.state()) and not s["Running"] and s, 60)
    if status["ExitCode"] != 0:
        raise PodError(f"helm test pod failed ({status['ExitCode']}): {helm_test.logs()}")
    checked.append("the chart's helm test pod passes")

    for each in pods:
        problems = log_problems(each.logs())
        if problems:
            raise PodError(f"{each.containers[0]} logged problems:\n" + "\n".join(problems))
        if not each.state()["Running"]:
            raise PodError(f"{each.containers[0]} is not running")
    checked.append("neither pod logged a warning or an error")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--helm", required=True)
    parser.add_argument("--chart", required=True)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--utility-image", required=True)
    args = parser.parse_args()

    started = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="dockermon-chart-e2e-")
    network = f"dockermon-chart-e2e-{os.getpid()}"
    docker("network", "create", network)
    checked = []
    node = None
    try:
        gateway = docker("network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", network)
        ca, cert, key = certificates(workdir, gateway)
        cluster = kube_standin.Cluster()
        server = kube_standin.serve(cluster, (gateway, 0), cert, key)
        with open(ca) as ca_file:
            node = Node(NODE, network, workdir, args.utility_image, cluster, gateway,
                        server.server_address[1], ca_file.read())
        scenario(args, workdir, network, cluster, node, checked)
    except (PodError, subprocess.CalledProcessError, urllib.error.URLError) as error:
        print(f"chart-e2e: FAILED: {error}", file=sys.stderr)
        for line in checked:
            print(f"chart-e2e: ok: {line}", file=sys.stderr)
        for name in docker("ps", "-a", "--filter", "label=dockermon-chart-e2e=1", "--format", "{{.Names}}").split():
            logs = subprocess.run(["docker", "logs", "--tail", "40", name], capture_output=True, text=True)
            print(f"--- {name}\n{logs.stdout}{logs.stderr}", file=sys.stderr)
        return 1
    finally:
        names = docker("ps", "-a", "--filter", "label=dockermon-chart-e2e=1", "--format", "{{.Names}}").split()
        if names:
            docker("rm", "-f", *names)
        docker("network", "rm", network, check=False)
        if node is not None:
            # Files the pods' users own: removed as root, in a container.
            node.root(f"rm -rf '{workdir}'/pods '{workdir}'/claims '{workdir}'/node-root")
        shutil.rmtree(workdir, ignore_errors=True)
    for line in checked:
        print(f"chart-e2e: ok: {line}")
    print(f"chart-e2e: the chart's collector and agent pods work on this Docker engine "
          f"({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
