"""Deployment files, checked without a Docker engine: the Dockerfile and
`make deps` read one package list; every path they name exists; the YAML
parses; ports, variable names and probes agree with `commsgate --help`."""
import os
import re
import subprocess
import tempfile
import time
import unittest

import grpc
import yaml

import harness

ROOT = harness.SRC_DIR
DEPLOY = os.path.join(ROOT, "deploy")


def read(*parts):
    with open(os.path.join(ROOT, *parts)) as f:
        return f.read()


def help_text():
    return subprocess.run([os.path.join(harness.BIN_DIR, "commsgate"), "--help"],
                          capture_output=True, text=True, check=True).stdout


def documented_settings(text):
    names = set(re.findall(r"^  ([A-Z][A-Z0-9_]+) ", text, re.M))
    names |= {n + "_FILE" for n in re.findall(r"file named by ([A-Z0-9_]+)_FILE", text)}
    return names


def default_of(text, name):
    m = re.search(r"^  %s +default: (\S+)" % name, text, re.M)
    return m.group(1) if m else None


def k8s_docs():
    docs = []
    for name in sorted(os.listdir(os.path.join(DEPLOY, "k8s"))):
        with open(os.path.join(DEPLOY, "k8s", name)) as f:
            docs += [d for d in yaml.safe_load_all(f) if d]
    return docs


# One per Redis mode: a single node, Sentinel, Cluster.
COMPOSE_FILES = ("docker-compose.yml", "docker-compose.sentinel.yml", "docker-compose.cluster.yml")


def compose_files():
    for name in COMPOSE_FILES:
        with open(os.path.join(DEPLOY, name)) as f:
            yield name, yaml.safe_load(f)


def containers(docs):
    for d in docs:
        if d["kind"] == "Deployment":
            for c in d["spec"]["template"]["spec"]["containers"]:
                yield d, c


class DeployTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.help = help_text()
        cls.settings = documented_settings(cls.help)
        cls.grpc_port = int(default_of(cls.help, "COMMSGATE_GRPC_ADDR").rsplit(":", 1)[1])
        cls.http_port = int(default_of(cls.help, "COMMSGATE_HTTP_ADDR").rsplit(":", 1)[1])
        cls.admin_port = int(default_of(cls.help, "COMMSGATE_ADMIN_ADDR").rsplit(":", 1)[1])

    def test_one_package_list_for_make_ci_and_docker(self):
        docker = read("Dockerfile")
        self.assertIn("scripts/deps.sh build", docker)
        self.assertIn("scripts/deps.sh runtime", docker)
        # Both stages, build and runtime, install from the same list.
        self.assertEqual(docker.count("COPY deploy/debian-packages.txt"), 2)
        self.assertIn("deploy/debian-packages.txt", read("scripts", "deps.sh"))
        self.assertIn("scripts/deps.sh", read("Makefile"))
        self.assertIn("make test", read(".ci", "run"))
        # Every package named has a role deps.sh knows.
        for line in read("deploy", "debian-packages.txt").splitlines():
            if line.strip() and not line.startswith("#"):
                roles = set(line.split()[1:]) - {w for w in line.split() if w.startswith("cmd=")}
                self.assertTrue(roles and roles <= {"build", "runtime", "test"}, line)
        # No apt-get of its own in the Dockerfile: the list is the one place.
        self.assertNotIn("apt-get install", docker)

    def test_the_runtime_packages_hold_every_library_the_image_loads(self):
        # The image once exited at start: libevent_extra-2.1.so.7 was in no
        # runtime package listed. Each library the shipped binaries need
        # directly must come from a package with the runtime role.
        listed = {line.split()[0] for line in read("deploy", "debian-packages.txt").splitlines()
                  if line.strip() and not line.startswith("#") and "runtime" in line.split()}
        # What apt installs with them: their dependencies, recursively (as
        # this machine's dpkg knows them; libgrpc29 brings libre2-9).
        runtime, todo = set(), list(listed)
        while todo:
            pkg = todo.pop()
            if pkg in runtime:
                continue
            runtime.add(pkg)
            deps = subprocess.run(["dpkg-query", "-W", "-f=${Depends},${Pre-Depends}", pkg],
                                  capture_output=True, text=True).stdout
            todo += [alt.split()[0].split(":")[0] for dep in deps.split(",") if dep.strip()
                     for alt in dep.split("|")[:1]]
        shipped = re.search(r"^COPY --from=build (.*) /usr/local/bin/$", read("Dockerfile"), re.M)
        self.assertTrue(shipped)
        for path in shipped.group(1).split():
            binary = os.path.join(harness.BIN_DIR, os.path.basename(path))
            dyn = subprocess.run(["readelf", "-d", binary], capture_output=True, text=True,
                                 check=True).stdout
            for lib in re.findall(r"\(NEEDED\).*\[(.+)\]", dyn):
                if lib.startswith(("libc.so", "libm.so", "libgcc_s", "libstdc++",
                                   "libasan", "libubsan", "libtsan", "libatomic")):
                    continue  # the C runtime, and what this test build's sanitizers add
                owner = subprocess.run(["dpkg", "-S", "*/" + lib], capture_output=True,
                                       text=True).stdout.split(":")[0]
                self.assertIn(owner, runtime, "%s needs %s (from %s), not in the runtime list"
                              % (os.path.basename(binary), lib, owner or "no package"))

    def test_every_path_named_exists(self):
        docker = read("Dockerfile")
        for src in re.findall(r"^COPY (?!--from)(\S+) ", docker, re.M):
            if src != ".":
                self.assertTrue(os.path.exists(os.path.join(ROOT, src)), src)
        for file, compose in compose_files():
            for name, svc in compose["services"].items():
                if "build" in svc:
                    ctx = os.path.normpath(os.path.join(DEPLOY, svc["build"]["context"]))
                    self.assertTrue(os.path.isfile(os.path.join(ctx, svc["build"]["dockerfile"])),
                                    (file, name))
        self.assertTrue(os.path.isfile(os.path.join(DEPLOY, ".env.example")))
        self.assertIn("/deploy/.env", read(".gitignore"))
        self.assertTrue(os.path.isfile(os.path.join(DEPLOY, "prometheus", "commsgate-alerts.yml")))

    def test_each_compose_file_names_its_own_redis(self):
        """Each mode's REDIS_URL: its scheme, and only hosts that are
        services of the same file (the sentinels, or the cluster's nodes)."""
        schemes = {"docker-compose.yml": "redis", "docker-compose.sentinel.yml": "redis-sentinel",
                   "docker-compose.cluster.yml": "redis-cluster"}
        for file, compose in compose_files():
            url = compose["services"]["commsgate"]["environment"]["REDIS_URL"]
            scheme, rest = url.split("://", 1)
            self.assertEqual(scheme, schemes[file], url)
            hosts = re.split(r"[/#]", rest.rsplit("@", 1)[-1])[0].split(",")
            for h in hosts:
                self.assertIn(h.rsplit(":", 1)[0], compose["services"], (file, url))

    def test_yaml_parses(self):
        for base, _, files in os.walk(DEPLOY):
            for name in files:
                if name.endswith((".yml", ".yaml")):
                    with open(os.path.join(base, name)) as f:
                        self.assertTrue(list(yaml.safe_load_all(f)), name)

    def test_variable_names_are_commsgates(self):
        names = set()
        for d in k8s_docs():
            if d["kind"] in ("ConfigMap", "Secret"):
                # Keys naming files (callers.yaml) are mounted, not variables.
                names |= {k for k in (d.get("data") or d.get("stringData")) if "." not in k}
        for _, c in containers(k8s_docs()):
            if c["name"] == "commsgate":
                names |= {e["name"] for e in c.get("env", [])}
        for line in read("deploy", ".env.example").splitlines():
            if "=" in line and not line.startswith("#"):
                names.add(line.split("=", 1)[0])
        for _, compose in compose_files():
            names |= set(compose["services"]["commsgate"]["environment"])
        self.assertTrue(names)
        self.assertEqual(names - self.settings, set())

    def test_the_bootstrap_runs_make_with_its_arguments_from_anywhere(self):
        # ./make is the README's first command: with make present it is make,
        # run in the clone whatever the current directory. (Without make it
        # installs the package list first; that was run on a bare Debian 12
        # root, see the README.)
        r = subprocess.run([os.path.join(harness.SRC_DIR, "make"), "-n", "deps"],
                           cwd="/", capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("sh scripts/deps.sh build test", r.stdout)

    def test_the_build_context_leaves_out_npm_installs(self):
        # make test installs npm packages in several places (240 MB): the
        # image's build context must hold none of them.
        ignore = read(".dockerignore").splitlines()
        self.assertIn("**/node_modules/", ignore)

    def test_ports_and_probes_match(self):
        self.assertIn("EXPOSE %d %d %d" % (self.grpc_port, self.http_port, self.admin_port),
                      read("Dockerfile"))
        docs = k8s_docs()
        seen, tls_seen = 0, False
        for _, c in containers(docs):
            if c["name"] != "commsgate":
                continue
            seen += 1
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            self.assertEqual(ports, {"grpc": self.grpc_port, "http": self.http_port,
                                     "admin": self.admin_port})
            env = {e["name"]: e["value"] for e in c.get("env", [])}
            # Probed from outside the pod on the admin listener: liveness asks
            # only that the process answers, readiness that Redis does, so a
            # Redis outage makes pods unready and never restarts them.
            self.assertEqual(c["livenessProbe"]["httpGet"], {"path": "/healthz", "port": "admin"})
            self.assertEqual(c["readinessProbe"]["httpGet"], {"path": "/readyz", "port": "admin"})
            if "COMMSGATE_GRPC_TLS_CERT_FILE" in env:
                # Mutual TLS and a callers file, each file from a mount.
                self.assertIn("COMMSGATE_GRPC_TLS_CLIENT_CA_FILE", env)
                self.assertIn("COMMSGATE_CALLERS_FILE", env)
                mounts = [m["mountPath"] for m in c["volumeMounts"]]
                for k in ("COMMSGATE_GRPC_TLS_CERT_FILE", "COMMSGATE_GRPC_TLS_KEY_FILE",
                          "COMMSGATE_GRPC_TLS_CLIENT_CA_FILE", "COMMSGATE_CALLERS_FILE"):
                    self.assertTrue(any(env[k].startswith(m + "/") for m in mounts), k)
                tls_seen = True
            else:
                # Plaintext: only on loopback (a sidecar).
                self.assertTrue(env.get("COMMSGATE_GRPC_ADDR", "").startswith("127.0.0.1:"), env)
            sc = c["securityContext"]
            self.assertTrue(sc["readOnlyRootFilesystem"])
            self.assertFalse(sc["allowPrivilegeEscalation"])
            self.assertIn("limits", c["resources"])
            self.assertIn("requests", c["resources"])
        self.assertEqual(seen, 2)  # the sidecar and the gateway
        self.assertTrue(tls_seen)  # the gateway, which other pods reach
        for d in docs:
            if d["kind"] == "Deployment":
                self.assertTrue(d["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"])
        # /metrics and the probes are in no Service: only gRPC and webhooks.
        for d in docs:
            if d["kind"] == "Service":
                self.assertEqual({p["targetPort"] for p in d["spec"]["ports"]}, {"grpc", "http"})
        kinds = {d["kind"] for d in docs}
        self.assertTrue({"Deployment", "Service", "PodDisruptionBudget", "ConfigMap",
                         "Secret"} <= kinds)
        # Non-root in the image too, and the user the manifests run as.
        self.assertIn("USER 10001", read("Dockerfile"))

    def test_a_redis_outage_is_unready_never_dead(self):
        # What the manifests' probes ask, asked of a real daemon whose Redis
        # goes away: the kubelet would stop routing to it, not restart it.
        import urllib.error
        import urllib.request
        # The admin listener the manifests probe is on the pod network.
        cm = [d for d in k8s_docs() if d["kind"] == "ConfigMap"][0]
        self.assertFalse(cm["data"]["COMMSGATE_ADMIN_ADDR"].startswith("127."))
        stack = harness.Stack(with_sim=False)

        def probe(path):
            url = "http://127.0.0.1:%d%s" % (stack.daemon.admin_port, path)
            try:
                return urllib.request.urlopen(url, timeout=2).status
            except urllib.error.HTTPError as e:
                return e.code
        try:
            stack.wait_serving(1)
            self.assertEqual((probe("/healthz"), probe("/readyz")), (200, 200))
            stack.redis.stop()
            deadline = time.monotonic() + 10
            while probe("/readyz") != 503:
                self.assertLess(time.monotonic(), deadline, "still ready without Redis")
                time.sleep(0.1)
            self.assertEqual(probe("/healthz"), 200)
        finally:
            self.assertEqual(stack.close(), 0)

class DashboardTest(unittest.TestCase):
    """deploy/grafana/commsgate.json and the alert rules it links to ask only
    for metrics, and labels, that a running commsgate exposes."""

    METRIC = re.compile(r"\b((?:commsgate|process)_[a-z0-9_]+)\b")
    BY = re.compile(r"\bby \(([^)]*)\)\s*\(\s*(?:rate|increase)?\(?\s*([a-z_0-9]+)")
    SELECTOR = re.compile(r"\b([a-z_0-9]+)\{([^}]*)\}")

    def exprs(self):
        import json
        with open(os.path.join(harness.SRC_DIR, "deploy", "grafana", "commsgate.json")) as f:
            dash = json.load(f)
        out = []
        for p in dash["panels"]:
            self.assertTrue(p["targets"], p["title"])
            out += [("panel " + p["title"], t["expr"]) for t in p["targets"]]
        self.assertIn("commsgate-alerts.yml", json.dumps(dash["links"]))
        rules = yaml.safe_load(read(os.path.join("deploy", "prometheus", "commsgate-alerts.yml")))
        out += [("alert " + r["alert"], r["expr"]) for g in rules["groups"] for r in g["rules"]]
        return out

    def exposed(self):
        """(families from # TYPE, with a histogram's series names; labels seen per family),
        after traffic that makes every family have a series."""
        import hashlib
        import urllib.request
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as callers:
            callers.write("callers:\n  - name: dash\n    token_sha256: %s\n    rpcs: [\"*\"]\n"
                          % hashlib.sha256(b"dash-token").hexdigest())
            callers.flush()
            stack = harness.Stack(env={"COMMSGATE_CALLERS_FILE": callers.name})
            try:
                stack.wait_serving(1)
                auth = [("authorization", "Bearer dash-token")]
                m = stack.stubs.messaging_pb2
                sid = stack.stubs.SendSMS(m.SendSMSRequest(to="+14155550100", body="x"),
                                          timeout=5, metadata=auth).sid
                for req in (m.SendSMSRequest(to="+15005550001", body="x"),  # Twilio 21211
                            m.SendWhatsAppRequest(to="+14155550100", body="x")):  # window
                    rpc = stack.stubs.SendSMS if isinstance(req, m.SendSMSRequest) \
                        else stack.stubs.SendWhatsApp
                    with self.assertRaises(grpc.RpcError):
                        rpc(req, timeout=5, metadata=auth)
                deadline = time.monotonic() + 10  # the simulator's status callbacks
                while stack.stubs.GetMessage(m.GetMessageRequest(sid=sid), timeout=5,
                                             metadata=auth).status != "delivered":
                    self.assertLess(time.monotonic(), deadline)
                    time.sleep(0.1)
                text = urllib.request.urlopen("http://127.0.0.1:%d/metrics"
                                              % stack.daemon.admin_port, timeout=5).read().decode()
            finally:
                self.assertEqual(stack.close(), 0)
        names, labels = set(), {}
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split()
                names.add(name)
                if kind == "histogram":
                    names |= {name + "_bucket", name + "_sum", name + "_count"}
            elif line and not line.startswith("#"):
                name = line.split("{")[0].split(" ")[0]
                found = re.findall(r'([a-z_]+)="', line.split("}")[0]) if "{" in line else []
                labels.setdefault(name, set()).update(found)
        return names, labels

    def test_every_query_names_what_commsgate_exposes(self):
        names, labels = self.exposed()
        for where, expr in self.exprs():
            used = set(self.METRIC.findall(expr))
            self.assertTrue(used, where)
            self.assertFalse(used - names, "%s asks for %s, not exposed" % (where, used - names))
            grouped = [(metric, {l.strip() for l in by.split(",")})
                       for by, metric in self.BY.findall(expr)]
            grouped += [(metric, set(re.findall(r"([a-z_]+)\s*(?:=~|!=|!~|=)", sel)))
                        for metric, sel in self.SELECTOR.findall(expr)]
            for metric, want in grouped:
                want -= {"le", "instance"}
                have = labels.get(metric, set())
                self.assertFalse(want - have, "%s groups %s by %s, labels %s"
                                 % (where, metric, want, sorted(have)))


if __name__ == "__main__":
    unittest.main()
