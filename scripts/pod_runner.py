"""Runs a Kubernetes pod spec as Docker containers, as a kubelet would, for scripts/chart_e2e.py.

The point is that the chart's pods start as the chart writes them: the same image, command,
arguments and environment, the same volumes at the same paths with the kubelet's ownership
and modes, the same user, groups, capabilities and read-only root. A field this does not know
how to carry over is an error, not something skipped: a chart change that needs it makes the
e2e test fail until it is taught here.

What maps to what:
- image, command/args (ENTRYPOINT/CMD as Kubernetes overrides them), env with value and
  valueFrom (fieldRef spec.nodeName, metadata.name, metadata.namespace; secretKeyRef and
  configMapKeyRef from the stand-in API server's objects);
- securityContext: runAsUser/runAsGroup -> --user, fsGroup and supplementalGroups ->
  --group-add, runAsNonRoot checked as the kubelet checks it, readOnlyRootFilesystem ->
  --read-only, allowPrivilegeEscalation false -> no-new-privileges, capabilities ->
  --cap-drop/--cap-add, seccomp RuntimeDefault -> Docker's default profile; hostPID -> --pid
  host; resources.limits -> --memory/--cpus;
- volumes: hostPath (type Directory must exist, DirectoryOrCreate is made 0755 root), emptyDir
  (0777, shared by the pod's containers), persistentVolumeClaim (a directory per claim, which
  must be one of the objects), projected (secret, configMap and serviceAccountToken sources,
  written as the kubelet's atomic writer does: a timestamped directory, a ..data link and a
  link per file), and the automounted ServiceAccount credentials with
  KUBERNETES_SERVICE_HOST/PORT; fsGroup gives volumes (not hostPath) its group, setgid
  directories and group read (and write where writable);
- Services: a pod gets each selecting Service's DNS names as network aliases; a Service whose
  port differs from its target port cannot be carried over and is an error.
The scheduling fields (nodeSelector, tolerations, affinity, priorityClassName, …) have no
meaning on one Docker engine and are accepted as they are.
"""

import base64
import json
import os
import subprocess
import time

SCHEDULING = {"nodeSelector", "tolerations", "affinity", "priorityClassName",
              "topologySpreadConstraints", "imagePullSecrets", "serviceAccountName",
              "terminationGracePeriodSeconds", "restartPolicy"}
POD_FIELDS = SCHEDULING | {"automountServiceAccountToken", "enableServiceLinks", "hostPID",
                           "securityContext", "initContainers", "containers", "volumes"}
POD_SECURITY = {"runAsNonRoot", "runAsUser", "runAsGroup", "fsGroup", "fsGroupChangePolicy",
                "supplementalGroups", "seccompProfile"}
CONTAINER_FIELDS = {"name", "image", "imagePullPolicy", "command", "args", "env", "ports",
                    "livenessProbe", "readinessProbe", "resources", "securityContext",
                    "volumeMounts"}
CONTAINER_SECURITY = {"runAsNonRoot", "runAsUser", "runAsGroup", "allowPrivilegeEscalation",
                      "readOnlyRootFilesystem", "capabilities"}
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


class PodError(Exception):
    pass


def docker(*args, check=True, capture=True):
    result = subprocess.run(["docker", *args], capture_output=capture, text=True)
    if check and result.returncode != 0:
        raise PodError(f"docker {' '.join(args[:3])}…: {result.stderr.strip()}")
    return result.stdout.strip() if capture else ""


def quantity_bytes(value):
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "k": 1000, "M": 10**6, "G": 10**9}
    for unit, factor in units.items():
        if str(value).endswith(unit):
            return int(float(str(value)[: -len(unit)]) * factor)
    return int(value)


def quantity_cpus(value):
    value = str(value)
    return float(value[:-1]) / 1000 if value.endswith("m") else float(value)


def unknown(where, spec, known):
    extra = set(spec) - known
    if extra:
        raise PodError(f"{where}: not carried over to Docker: {sorted(extra)} (teach scripts/pod_runner.py)")


class Node:
    """One node: the Docker engine, a network standing in for the cluster's, and a scratch
    directory for volumes. `root(script)` runs a shell script as root over that directory
    (in a container of `utility_image`), so that ownership can be set without root here."""

    def __init__(self, name, network, workdir, utility_image, cluster, api_host, api_port, api_ca):
        self.name, self.network, self.workdir = name, network, workdir
        self.utility_image, self.cluster = utility_image, cluster
        self.api_host, self.api_port, self.api_ca = api_host, api_port, api_ca

    def root(self, script):
        docker("run", "--rm", "--network", "none", "-v", f"{self.workdir}:{self.workdir}",
               self.utility_image, "sh", "-euc", script)


class Pod:
    def __init__(self, node, namespace, name, spec, labels, services):
        unknown(f"pod {name}", spec, POD_FIELDS)
        unknown(f"pod {name} securityContext", spec.get("securityContext", {}), POD_SECURITY)
        if spec.get("enableServiceLinks", True):
            raise PodError(f"pod {name}: service links (environment variables per Service) are not carried over")
        self.node, self.namespace, self.name, self.spec = node, namespace, name, spec
        self.labels, self.services = labels, services
        self.security = spec.get("securityContext", {})
        self.dir = os.path.join(node.workdir, "pods", name)
        os.makedirs(self.dir)
        self.containers = []  # Docker names of the running containers
        self.volumes = {}

    # --- volumes ---------------------------------------------------------------------
    def _object(self, resource, name):
        return self.node.cluster.get("api/v1", self.namespace, resource, name)

    def _fs_group_script(self, path, writable):
        group = self.security.get("fsGroup")
        if group is None:
            return ""
        mode = "g+rwX" if writable else "g+rX"
        return f"chgrp -R {group} '{path}' && chmod -R {mode} '{path}' && find '{path}' -type d -exec chmod g+s {{}} +\n"

    def _projected(self, name, sources, default_mode):
        files = {}
        for source in sources:
            if "secret" in source or "configMap" in source:
                kind = "secret" if "secret" in source else "configMap"
                ref = source[kind]
                unknown(f"volume {name} {kind}", ref, {"name", "items", "optional"})
                found = self._object("secrets" if kind == "secret" else "configmaps", ref["name"])
                if found is None:
                    # The kubelet keeps the pod in ContainerCreating until it exists.
                    raise PodError(f"volume {name}: {kind} {ref['name']} does not exist (ContainerCreating)")
                data = found.get("data", {})
                if kind == "secret":
                    data = {k: base64.b64decode(v).decode() for k, v in data.items()}
                for item in ref.get("items") or [{"key": k, "path": k} for k in data]:
                    if item["key"] not in data:
                        raise PodError(f"volume {name}: {kind} {ref['name']} has no key {item['key']}")
                    files[item["path"]] = (data[item["key"]], item.get("mode", default_mode))
            elif "serviceAccountToken" in source:
                ref = source["serviceAccountToken"]
                unknown(f"volume {name} serviceAccountToken", ref, {"audience", "expirationSeconds", "path"})
                account = self.spec.get("serviceAccountName", "default")
                token = self.node.cluster.bound_token(self.namespace, account, self.name, self.node.name,
                                                      [ref.get("audience") or "https://kubernetes.default.svc"])
                files[ref["path"]] = (token, default_mode)
            else:
                raise PodError(f"volume {name}: projected source {sorted(source)} not carried over")
        return self._atomic_dir(name, files, writable=False)

    def _atomic_dir(self, name, files, writable):
        """Files as the kubelet's atomic writer lays them out, owned and moded as it does."""
        path = os.path.join(self.dir, "volumes", name)
        stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.000000001")
        os.makedirs(os.path.join(path, stamp))
        script = ""
        for file, (content, mode) in files.items():
            with open(os.path.join(path, stamp, file), "w") as out:
                out.write(content)
            os.symlink(f"..data/{file}", os.path.join(path, file))
            script += f"chmod {mode:o} '{path}/{stamp}/{file}'\n"
        os.symlink(stamp, os.path.join(path, "..data"))
        script = f"chmod 0777 '{path}' && chmod 0755 '{path}/{stamp}'\n" + script
        self.node.root(script + self._fs_group_script(path, writable))
        return path

    def _volume(self, volume):
        name = volume["name"]
        if name in self.volumes:
            return self.volumes[name]
        if "hostPath" in volume:
            path, kind = volume["hostPath"]["path"], volume["hostPath"].get("type", "")
            if kind == "DirectoryOrCreate" and not os.path.exists(path):
                os.makedirs(path, mode=0o755)
            elif kind == "Directory" and not os.path.isdir(path):
                raise PodError(f"volume {name}: hostPath {path} is not a directory")
            elif kind not in ("", "Directory", "DirectoryOrCreate"):
                raise PodError(f"volume {name}: hostPath type {kind} not carried over")
            source = path
        elif "emptyDir" in volume:
            source = os.path.join(self.dir, "volumes", name)
            os.makedirs(source)
            self.node.root(f"chmod 0777 '{source}'\n" + self._fs_group_script(source, True))
        elif "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            if self._object("persistentvolumeclaims", claim) is None:
                raise PodError(f"volume {name}: PersistentVolumeClaim {claim} does not exist (Pending)")
            # A claim outlives pods: its directory is the node's, not the pod's.
            source = os.path.join(self.node.workdir, "claims", claim)
            if not os.path.isdir(source):
                os.makedirs(source, mode=0o755)
                self.node.root(self._fs_group_script(source, True) or "true")
        elif "projected" in volume:
            projected = volume["projected"]
            source = self._projected(name, projected["sources"], projected.get("defaultMode", 0o644))
        else:
            raise PodError(f"volume {name}: kind {sorted(set(volume) - {'name'})} not carried over")
        self.volumes[name] = source
        return source

    def _service_account_volume(self):
        """The automounted credentials of the pod's ServiceAccount (kube-api-access-*)."""
        if "kube-api-access" not in self.volumes:
            account = self.spec.get("serviceAccountName", "default")
            token = self.node.cluster.service_account_token(self.namespace, account)
            self.volumes["kube-api-access"] = self._atomic_dir("kube-api-access", {
                "token": (token, 0o644), "ca.crt": (self.node.api_ca, 0o644),
                "namespace": (self.namespace, 0o644)}, writable=False)
        return self.volumes["kube-api-access"]

    # --- containers ------------------------------------------------------------------
    def _env(self, container):
        env = {}
        for var in container.get("env", []):
            if "value" in var:
                env[var["name"]] = var["value"]
                continue
            source = var["valueFrom"]
            if "fieldRef" in source:
                field = source["fieldRef"]["fieldPath"]
                values = {"spec.nodeName": self.node.name, "metadata.name": self.name,
                          "metadata.namespace": self.namespace}
                if field not in values:
                    raise PodError(f"env {var['name']}: fieldRef {field} not carried over")
                env[var["name"]] = values[field]
            elif "secretKeyRef" in source or "configMapKeyRef" in source:
                kind = "secretKeyRef" if "secretKeyRef" in source else "configMapKeyRef"
                ref = source[kind]
                found = self._object("secrets" if kind == "secretKeyRef" else "configmaps", ref["name"])
                if found is None or ref["key"] not in found.get("data", {}):
                    raise PodError(f"env {var['name']}: {ref['name']}/{ref['key']} does not exist")
                value = found["data"][ref["key"]]
                env[var["name"]] = base64.b64decode(value).decode() if kind == "secretKeyRef" else value
            else:
                raise PodError(f"env {var['name']}: valueFrom {sorted(source)} not carried over")
        return env

    def _run_args(self, container, detach):
        where = f"pod {self.name} container {container['name']}"
        unknown(where, container, CONTAINER_FIELDS)
        security = container.get("securityContext", {})
        unknown(f"{where} securityContext", security, CONTAINER_SECURITY)
        image = container["image"]
        policy = container.get("imagePullPolicy", "IfNotPresent")
        present = subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0
        if policy == "Always" or not present:
            raise PodError(f"{where}: image {image} is not on this engine (and nothing can be pulled)")
        user = security.get("runAsUser", self.security.get("runAsUser"))
        group = security.get("runAsGroup", self.security.get("runAsGroup"))
        if security.get("runAsNonRoot", self.security.get("runAsNonRoot")):
            image_user = docker("image", "inspect", "-f", "{{.Config.User}}", image)
            effective = user if user is not None else (image_user.split(":")[0] or "0")
            if str(effective) == "0" or not str(effective).isdigit():
                raise PodError(f"{where}: runAsNonRoot and the image runs as {effective or 'root'}")
        args = ["--name", f"{self.name}-{container['name']}", "--label", "dockermon-chart-e2e=1"]
        if detach:
            args.append("-d")
        if user is not None:
            args += ["--user", f"{user}:{group if group is not None else user}"]
        for extra in ([self.security["fsGroup"]] if "fsGroup" in self.security else []) + \
                self.security.get("supplementalGroups", []):
            args += ["--group-add", str(extra)]
        if security.get("readOnlyRootFilesystem"):
            args.append("--read-only")
        if security.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        capabilities = security.get("capabilities", {})
        unknown(f"{where} capabilities", capabilities, {"drop", "add"})
        for cap in capabilities.get("drop", []):
            args += ["--cap-drop", cap]
        for cap in capabilities.get("add", []):
            args += ["--cap-add", cap]
        seccomp = self.security.get("seccompProfile", {}).get("type", "RuntimeDefault")
        if seccomp != "RuntimeDefault":
            raise PodError(f"{where}: seccomp profile {seccomp} not carried over")
        if self.spec.get("hostPID"):
            args += ["--pid", "host"]
        limits = container.get("resources", {}).get("limits", {})
        if "memory" in limits:
            args += ["--memory", str(quantity_bytes(limits["memory"])), "--memory-swap",
                     str(quantity_bytes(limits["memory"]))]
        if "cpu" in limits:
            args += ["--cpus", str(quantity_cpus(limits["cpu"]))]
        env = self._env(container)
        volumes = {v["name"]: v for v in self.spec.get("volumes", [])}
        for mount in container.get("volumeMounts", []):
            unknown(f"{where} volumeMount {mount['name']}", mount, {"name", "mountPath", "readOnly"})
            source = self._volume(volumes[mount["name"]])
            args += ["-v", f"{source}:{mount['mountPath']}{':ro' if mount.get('readOnly') else ''}"]
        if self.spec.get("automountServiceAccountToken", True):
            args += ["-v", f"{self._service_account_volume()}:{SERVICE_ACCOUNT_DIR}:ro"]
            env["KUBERNETES_SERVICE_HOST"] = self.node.api_host
            env["KUBERNETES_SERVICE_PORT"] = str(self.node.api_port)
        for key, value in env.items():
            args += ["-e", f"{key}={value}"]
        command = container.get("command")
        if command:
            args += ["--entrypoint", command[0]]
        args.append(image)
        args += (command or [])[1:] + container.get("args", [])
        return args

    def _network_args(self, first):
        if not first:
            return ["--network", f"container:{self.containers[0]}"]
        args = ["--network", self.node.network, "--hostname", self.name]
        for service in self.services:
            selector = service["spec"].get("selector") or {}
            if not selector or any(self.labels.get(k) != v for k, v in selector.items()):
                continue
            for port in service["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                numbers = [p["containerPort"] for c in self.spec["containers"] for p in c.get("ports", [])
                           if p.get("name") == target or p["containerPort"] == target]
                if numbers != [port["port"]]:
                    raise PodError(f"Service {service['metadata']['name']} port {port['port']} -> {target}:"
                                   " a port that differs from its target is not carried over")
            name = service["metadata"]["name"]
            for alias in (name, f"{name}.{self.namespace}", f"{name}.{self.namespace}.svc",
                          f"{name}.{self.namespace}.svc.cluster.local"):
                args += ["--network-alias", alias]
        return args

    def start(self):
        """Mounts every volume (a missing Secret or ConfigMap stops here, as the kubelet
        holds the pod in ContainerCreating), runs the init containers to completion, in
        order, then starts the containers."""
        for volume in self.spec.get("volumes", []):
            self._volume(volume)
        for init in self.spec.get("initContainers", []):
            args = self._run_args(init, detach=False)
            result = subprocess.run(["docker", "run", "--rm", "--network", "none", *args],
                                    capture_output=True, text=True)
            if result.returncode != 0:
                raise PodError(f"pod {self.name}: init container {init['name']} failed "
                               f"({result.returncode}): {result.stderr.strip()}")
        for container in self.spec["containers"]:
            args = self._run_args(container, detach=True)
            network = self._network_args(first=not self.containers)
            docker("run", *network, *args)
            self.containers.append(f"{self.name}-{container['name']}")
        return self

    def ip(self):
        return docker("inspect", "-f", f"{{{{(index .NetworkSettings.Networks \"{self.node.network}\").IPAddress}}}}",
                      self.containers[0])

    def state(self, index=0):
        return json.loads(docker("inspect", "-f", "{{json .State}}", self.containers[index]))

    def logs(self, index=0):
        result = subprocess.run(["docker", "logs", self.containers[index]], capture_output=True, text=True)
        return result.stdout + result.stderr

    def probe_url(self, container_index, probe):
        """The URL of an httpGet probe of a container, on the pod's address."""
        container = self.spec["containers"][container_index]
        check = container[probe]["httpGet"]
        port = check["port"]
        if isinstance(port, str):
            port = next(p["containerPort"] for p in container["ports"] if p.get("name") == port)
        return f"http://{self.ip()}:{port}{check['path']}"
