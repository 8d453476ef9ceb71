"""A stand-in for the Kubernetes API server, for scripts/chart_e2e.py.

No API server can run on these machines (no image can be pulled, no kube-apiserver binary is
packaged in the registries we reach), so the chart's e2e test runs its pods on the local
Docker engine against this: an HTTPS server holding objects in memory and answering the
requests the collector makes, as an API server would answer them.

- Objects by path: GET (one object, or a list of a collection, across namespaces when the
  path names none), POST (create; 409 AlreadyExists), PUT (replace; 409 Conflict on a stale
  resourceVersion), PATCH (server-side apply and strategic merge as a deep merge, JSON merge
  patch, JSON patch; a /status path changes the status alone), DELETE. Watches stream the
  changes after the resourceVersion asked for until their timeoutSeconds.
- TokenReviews: tokens the test registered (the projected ServiceAccount tokens it mints for
  pods) are authenticated for their audiences, with the user and the pod's and node's names
  in `extra`, as the API server reports a bound token; others are not.
- Every request must carry a bearer token the test registered for a ServiceAccount
  (the pod's automounted one); RBAC is not enforced (scripts/validate_chart.py checks the
  chart's roles against what the collector makes).

What it leaves out, and the tests do not need: field ownership and conflicts of server-side
apply, strategic-merge list semantics (lists are replaced), admission, validation against
the CRDs' schemas (scripts/validate-manifests.sh does that offline), garbage collection.
"""

import base64
import copy
import datetime
import json
import ssl
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class ApiError(Exception):
    def __init__(self, code, reason, message):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def status(self):
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code}


def resource_path(path):
    """(prefix, namespace, resource, name, subresource) of an API path, or None.

    /api/v1/namespaces/NS/secrets/NAME, /apis/GROUP/VERSION/RESOURCE/NAME/status, …"""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 2:
        prefix, rest = "/".join(parts[:2]), parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        prefix, rest = "/".join(parts[:3]), parts[3:]
    else:
        return None
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not 1 <= len(rest) <= 3:
        return None
    return (prefix, namespace, rest[0], rest[1] if len(rest) > 1 else None,
            rest[2] if len(rest) > 2 else None)


def merge(target, patch, null_deletes=True):
    """Deep-merges patch into target (a copy): maps merge, anything else is replaced."""
    if not isinstance(patch, dict) or not isinstance(target, dict):
        return copy.deepcopy(patch)
    merged = copy.deepcopy(target)
    for key, value in patch.items():
        if value is None and null_deletes:
            merged.pop(key, None)
        else:
            merged[key] = merge(merged.get(key), value, null_deletes)
    return merged


def json_patch(document, operations):
    """RFC 6902 add, remove, replace and test, which is what controllers send (finalizers)."""
    document = copy.deepcopy(document)
    for op in operations:
        keys = [k.replace("~1", "/").replace("~0", "~") for k in op["path"].split("/")[1:]]
        parent = document
        for key in keys[:-1]:
            parent = parent[int(key)] if isinstance(parent, list) else parent.setdefault(key, {})
        last = keys[-1]
        if op["op"] == "test":
            current = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if current != op["value"]:
                raise ApiError(422, "Invalid", f"test of {op['path']} failed")
        elif op["op"] in ("add", "replace"):
            if isinstance(parent, list):
                if last == "-":
                    parent.append(op["value"])
                elif op["op"] == "add":
                    parent.insert(int(last), op["value"])
                else:
                    parent[int(last)] = op["value"]
            else:
                parent[last] = op["value"]
        elif op["op"] == "remove":
            if isinstance(parent, list):
                del parent[int(last)]
            else:
                parent.pop(last, None)
        else:
            raise ApiError(422, "Invalid", f"unsupported JSON patch op {op['op']}")
    return document


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Cluster:
    """The objects, the change log watches follow, and the tokens."""

    def __init__(self):
        self.lock = threading.Condition()
        self.objects = {}  # (prefix, namespace, resource, name) -> object
        self.changes = []  # (resourceVersion, key, type, object)
        self.version = 1
        self.access_tokens = {}  # bearer token -> ServiceAccount username
        self.bound_tokens = {}  # projected token -> review user and audiences
        self.token_reviews = []  # (audiences asked, authenticated) per review

    # --- the test's side ---------------------------------------------------------------
    def add(self, doc, resource, namespace=None):
        """Creates an object as `kubectl apply` of a rendered manifest would."""
        api_version = doc["apiVersion"]
        prefix = "api/v1" if api_version == "v1" else f"apis/{api_version}"
        namespaced = namespace if doc.get("metadata", {}).get("namespace") is None else doc["metadata"]["namespace"]
        with self.lock:
            self._store((prefix, namespaced, resource, doc["metadata"]["name"]), doc, "ADDED")

    def get(self, prefix, namespace, resource, name):
        with self.lock:
            found = self.objects.get((prefix, namespace, resource, name))
            return copy.deepcopy(found) if found else None

    def service_account_token(self, namespace, name):
        """The token of a pod's automounted ServiceAccount credentials."""
        token = base64.urlsafe_b64encode(uuid.uuid4().bytes * 2).decode().rstrip("=")
        self.access_tokens[token] = f"system:serviceaccount:{namespace}:{name}"
        return token

    def bound_token(self, namespace, account, pod, node, audiences):
        """A projected ServiceAccount token bound to a pod on a node, for these audiences."""
        # A JWT as the API server issues them (the collector refuses anything else unasked);
        # the stand-in knows its tokens by value and never reads their claims.
        def part(data):
            return base64.urlsafe_b64encode(data).decode().rstrip("=")
        token = ".".join((part(b'{"alg":"RS256","kid":"standin"}'),
                          part(json.dumps({"aud": list(audiences), "sub": f"system:serviceaccount:{namespace}:{account}"}).encode()),
                          part(uuid.uuid4().bytes * 8)))
        self.bound_tokens[token] = {
            "audiences": list(audiences),
            "user": {
                "username": f"system:serviceaccount:{namespace}:{account}",
                "uid": str(uuid.uuid4()),
                "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}",
                           "system:authenticated"],
                "extra": {
                    "authentication.kubernetes.io/pod-name": [pod],
                    "authentication.kubernetes.io/pod-uid": [str(uuid.uuid4())],
                    "authentication.kubernetes.io/node-name": [node],
                },
            },
        }
        return token

    # --- the API's side (under self.lock) ----------------------------------------------
    def _store(self, key, obj, change):
        self.version += 1
        obj = copy.deepcopy(obj)
        metadata = obj.setdefault("metadata", {})
        metadata["name"] = key[3]
        if key[1] is not None:
            metadata["namespace"] = key[1]
        metadata["resourceVersion"] = str(self.version)
        metadata.setdefault("uid", str(uuid.uuid4()))
        metadata.setdefault("creationTimestamp", now())
        if change == "DELETED":
            self.objects.pop(key, None)
        else:
            self.objects[key] = obj
        self.changes.append((self.version, key, change, copy.deepcopy(obj)))
        self.lock.notify_all()
        return obj

    def handle(self, method, path, query, body, content_type):
        if path == "/version":
            return 200, {"major": "1", "minor": "34", "gitVersion": "v1.34.0-dockermon-standin"}
        if path.rstrip("/") == "/apis/authentication.k8s.io/v1/tokenreviews" and method == "POST":
            return 201, self._review(body)
        parsed = resource_path(path)
        if parsed is None:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        prefix, namespace, resource, name, sub = parsed
        key = (prefix, namespace, resource, name)
        current = self.objects.get(key)
        if method == "GET" and name is None:
            return 200, self._list(prefix, namespace, resource)
        if method == "POST" and name is None:
            name = body.get("metadata", {}).get("name")
            if not name:
                generate = body.get("metadata", {}).get("generateName", "object-")
                name = f"{generate}{uuid.uuid4().hex[:5]}"
            key = (prefix, namespace, resource, name)
            if key in self.objects:
                raise ApiError(409, "AlreadyExists", f'{resource} "{name}" already exists')
            return 201, self._store(key, body, "ADDED")
        if name is None:
            raise ApiError(405, "MethodNotAllowed", f"{method} on a collection")
        if method == "GET":
            if current is None:
                raise ApiError(404, "NotFound", f'{resource} "{name}" not found')
            return 200, current
        if method == "DELETE":
            if current is None:
                raise ApiError(404, "NotFound", f'{resource} "{name}" not found')
            if current["metadata"].get("finalizers"):
                current = merge(current, {"metadata": {"deletionTimestamp": now()}})
                return 200, self._store(key, current, "MODIFIED")
            self._store(key, current, "DELETED")
            return 200, current
        if method == "PUT":
            if current is None:
                raise ApiError(404, "NotFound", f'{resource} "{name}" not found')
            expected = body.get("metadata", {}).get("resourceVersion")
            if expected and expected != current["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", f'the object has been modified; {resource} "{name}"')
            replacement = merge(current, {"status": body.get("status")}) if sub == "status" else body
            return 200, self._store(key, replacement, "MODIFIED")
        if method == "PATCH":
            patch_type = content_type.split(";")[0].strip()
            if current is None and patch_type != "application/apply-patch+yaml":
                raise ApiError(404, "NotFound", f'{resource} "{name}" not found')
            base = current or {}
            if patch_type == "application/json-patch+json":
                patched = json_patch(base, body)
            else:
                # Apply, strategic merge and JSON merge patch: maps merge, lists are replaced.
                if sub == "status":
                    body = {"status": body.get("status")}
                patched = merge(base, body, null_deletes=patch_type != "application/apply-patch+yaml")
            if sub == "status" and current is not None:
                patched = merge(current, {"status": patched.get("status")}, null_deletes=False)
            deleting = patched.get("metadata", {}).get("deletionTimestamp")
            if deleting and not patched["metadata"].get("finalizers"):
                self._store(key, patched, "DELETED")
                return 200, patched
            return (200 if current else 201), self._store(key, patched, "MODIFIED" if current else "ADDED")
        raise ApiError(405, "MethodNotAllowed", f"{method} {path}")

    def _list(self, prefix, namespace, resource):
        items = [copy.deepcopy(obj) for (p, ns, res, _), obj in sorted(self.objects.items(), key=lambda kv: str(kv[0]))
                 if p == prefix and res == resource and (namespace is None or ns == namespace)]
        return {"kind": "List", "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self.version)}, "items": items}

    def _review(self, body):
        spec = body.get("spec", {})
        asked = spec.get("audiences") or []
        bound = self.bound_tokens.get(spec.get("token", ""))
        audiences = [a for a in asked if bound and a in bound["audiences"]]
        authenticated = bool(bound) and bool(audiences)
        self.token_reviews.append((asked, authenticated))
        status = {"authenticated": authenticated, "audiences": audiences}
        if authenticated:
            status["user"] = bound["user"]
        else:
            status["error"] = "[invalid bearer token, token audiences are invalid]"
        review = copy.deepcopy(body)
        review["status"] = status
        return review

    def watch_events(self, prefix, namespace, resource, since, deadline):
        """Yields watch events after resourceVersion `since` until the deadline."""
        import time
        position = 0
        while True:
            with self.lock:
                while position < len(self.changes) and self.changes[position][0] <= since:
                    position += 1
                pending = []
                while position < len(self.changes):
                    version, (p, ns, res, _), change, obj = self.changes[position]
                    position += 1
                    if p == prefix and res == resource and (namespace is None or ns == namespace):
                        pending.append({"type": change, "object": obj})
                if not pending:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return
                    self.lock.wait(min(remaining, 1.0))
                    continue
            yield from pending


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    cluster = None  # set by serve()

    def log_message(self, *args):
        pass

    def _reply(self, code, payload):
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _serve(self):
        import time
        url = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        cluster = self.cluster
        bearer = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        if bearer not in cluster.access_tokens:
            self._reply(401, ApiError(401, "Unauthorized", "Unauthorized").status())
            return
        if self.command == "GET" and query.get("watch") in ("1", "true"):
            parsed = resource_path(url.path)
            if parsed is None or parsed[3] is not None:
                self._reply(404, ApiError(404, "NotFound", url.path).status())
                return
            prefix, namespace, resource, _, _ = parsed
            since = int(query.get("resourceVersion") or 0)
            timeout = min(int(query.get("timeoutSeconds") or 60), 60)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for event in cluster.watch_events(prefix, namespace, resource, since,
                                                  time.monotonic() + timeout):
                    line = json.dumps(event).encode() + b"\n"
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            return
        try:
            body = json.loads(raw) if raw else {}
            with cluster.lock:
                code, payload = cluster.handle(self.command, url.path, query, body,
                                               self.headers.get("Content-Type") or "")
        except ApiError as error:
            code, payload = error.code, error.status()
        except (ValueError, KeyError, IndexError, TypeError) as error:
            code, payload = 400, ApiError(400, "BadRequest", f"{type(error).__name__}: {error}").status()
        self._reply(code, payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve


def serve(cluster, address, certfile, keyfile):
    """Starts the HTTPS server on (host, port) in a thread; returns the server."""
    handler = type("BoundHandler", (Handler,), {"cluster": cluster})
    server = ThreadingHTTPServer(address, handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certfile, keyfile)
    # The handshake happens in each connection's thread, not in the accepting one.
    server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
