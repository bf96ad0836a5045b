"""The image, the compose file and the sidecar manifest, run for real with
podman: the image built from the Dockerfile answers health and a SendSMS;
deploy/docker-compose.yml comes up under podman-compose (and parses under
Debian's docker-compose 1.29); deploy/k8s/sidecar.yaml runs under
`podman kube play`, and a Redis outage makes it unready, never dead.

No image registry is reachable where the tests run, so the Debian base image
is made here with mmdebstrap (once; podman keeps it), and the compose file's
Redis is Debian's redis-server in a small image of its own. podman writes
its own notes on this machine's lack of systemd to stderr; they are noise."""
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

import grpc
import yaml

import harness

ROOT = harness.SRC_DIR
IMAGE = "localhost/commsgate:test"
REDIS_IMAGE = "localhost/commsgate-test-redis:latest"
BASE = "docker.io/library/debian"
# Every name this test gives podman starts with this, so cleanup is exact.
PREFIX = "cgtest-%d" % os.getpid()
# Where sidecar.yaml has the app reach commsgate.
APP_TARGET = "127.0.0.1:50051"

# Settings podman needs on machines without a full cgroup v2 and systemd
# (crun fails there; runc works), and limits below the sandbox's own so that
# setting them is allowed. Harmless on a machine that needs none of it.
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
"""


class Podman:
    def __init__(self, workdir):
        conf = os.path.join(workdir, "containers.conf")
        with open(conf, "w") as f:
            f.write(CONTAINERS_CONF)
        self.env = dict(os.environ, CONTAINERS_CONF=conf)

    def run(self, *args, check=True, timeout=600, env=None, cwd=None, tool="podman"):
        r = subprocess.run([tool] + [str(a) for a in args], capture_output=True, text=True,
                           timeout=timeout, env=dict(self.env, **(env or {})), cwd=cwd)
        if check and r.returncode != 0:
            raise AssertionError("%s %s failed (%d):\n%s\n%s" % (
                tool, " ".join(map(str, args)), r.returncode, r.stdout[-3000:], r.stderr[-3000:]))
        return r

    def exists(self, image):
        return self.run("image", "exists", image, check=False).returncode == 0

    def ip(self, container):
        out = self.run("inspect", "-f",
                       "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                       container).stdout.split()
        return out[0]


def base_image(podman, workdir):
    """debian:bookworm and bookworm-slim as the Dockerfile names them: the real
    ones if this machine has them, else a minimal Debian 12 made now."""
    if not podman.exists(BASE + ":bookworm"):
        tar = os.path.join(workdir, "base.tar")
        subprocess.run(["mmdebstrap", "--variant=minbase", "--quiet", "bookworm", tar],
                       check=True, capture_output=True, timeout=600)
        podman.run("import", tar, BASE + ":bookworm")
        os.unlink(tar)
    if not podman.exists(BASE + ":bookworm-slim"):
        podman.run("tag", BASE + ":bookworm", BASE + ":bookworm-slim")


def wait_http(url, want=200, timeout=30.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = harness.http_get(url, timeout=2)[0]
        except OSError as e:
            last = e
        if last == want:
            return
        time.sleep(0.2)
    raise AssertionError("%s: wanted %s, last %s" % (url, want, last))


def send_sms(target, to):
    with grpc.insecure_channel(target) as ch:
        grpc.channel_ready_future(ch).result(timeout=20)
        stubs = harness.Stubs(ch)
        return stubs.SendSMS(stubs.messaging_pb2.SendSMSRequest(to=to, body="from a container"),
                             timeout=10)


class ContainerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="commsgate-containers-")
        cls.podman = Podman(cls.dir)
        base_image(cls.podman, cls.dir)
        cls.podman.run("build", "--pull=never", "--format", "docker", "-t", IMAGE, ROOT,
                       timeout=1200)
        cls.podman.run("build", "--pull=never", "-t", REDIS_IMAGE, "-f",
                       os.path.join(ROOT, "tests/integration/containers/redis.Containerfile"),
                       os.path.join(ROOT, "tests/integration/containers"), timeout=600)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def tearDown(self):
        p = self.podman
        for pod in p.run("pod", "ps", "-q", "--filter", "name=" + PREFIX, check=False).stdout.split():
            p.run("pod", "rm", "-f", pod, check=False)
        for c in p.run("ps", "-aq", "--filter", "name=" + PREFIX, check=False).stdout.split():
            p.run("rm", "-f", c, check=False)
        # podman-compose 1.0.3's down leaves its network behind.
        for net in p.run("network", "ls", "-q", "--filter", "name=" + PREFIX,
                         check=False).stdout.split():
            p.run("network", "rm", "-f", net, check=False)

    def container(self, name, *args):
        self.podman.run("run", "-d", "--name", "%s-%s" % (PREFIX, name), *args)
        return "%s-%s" % (PREFIX, name)

    def test_image_runs_and_sends(self):
        """The image on the host's loopback (--network host), against a real
        redis-server and the simulator from the same image."""
        redis = harness.start_redis()
        self.addCleanup(redis.stop)
        sim_port, grpc_port, http_port, admin_port = (harness.free_port() for _ in range(4))
        self.container("sim", "--network", "host", "--entrypoint", "/usr/local/bin/twilio-sim",
                       IMAGE, "--listen", "127.0.0.1:%d" % sim_port)
        sim = harness.Sim("http://127.0.0.1:%d" % sim_port)
        env = harness.daemon_env(redis.port, sim.url, grpc_port, http_port,
                                 admin_port=admin_port)
        env_args = []
        for k, v in env.items():
            env_args += ["-e", "%s=%s" % (k, v)]
        cg = self.container("commsgate", "--network", "host", "--read-only", *env_args, IMAGE)
        wait_http("http://127.0.0.1:%d/readyz" % admin_port)

        # The Dockerfile's HEALTHCHECK, run as the engine would (kept by
        # --format docker; this machine has no systemd to schedule it).
        self.podman.run("healthcheck", "run", cg)
        user = self.podman.run("inspect", "-f", "{{.Config.User}}", cg).stdout.strip()
        self.assertEqual(user, "10001:10001")

        r = send_sms("127.0.0.1:%d" % grpc_port, "+14155550100")
        self.assertTrue(r.sid.startswith("SM"), r)
        got = [q for q in sim.requests("/Messages.json") if q["method"] == "POST"]
        self.assertEqual(len(got), 1, got)
        self.assertEqual(sim.params(got[0])["To"], "+14155550100")

        # Redis gone: not ready, still alive.
        redis.stop()
        wait_http("http://127.0.0.1:%d/readyz" % admin_port, want=503)
        wait_http("http://127.0.0.1:%d/healthz" % admin_port, want=200)

    def compose_up(self, name, ready_timeout=60):
        """deploy/NAME as shipped, beside the .env its header says to make,
        up under podman-compose with its ports on this host's loopback;
        returns (project, gRPC target, admin URL)."""
        work = os.path.join(self.dir, name)
        os.makedirs(work)
        shutil.copy(os.path.join(ROOT, "deploy", name), work)
        shutil.copy(os.path.join(ROOT, "deploy/.env.example"), os.path.join(work, ".env"))
        grpc_port, admin_port = harness.free_port(), harness.free_port()
        env = {
            "COMMSGATE_IMAGE": IMAGE,
            "REDIS_IMAGE": REDIS_IMAGE,
            "COMMSGATE_GRPC_PUBLISH": "127.0.0.1:%d" % grpc_port,
            "COMMSGATE_HTTP_PUBLISH": "127.0.0.1:%d" % harness.free_port(),
            "COMMSGATE_ADMIN_PUBLISH": "127.0.0.1:%d" % admin_port,
        }
        # Debian 12's docker-compose (1.29) reads the same file.
        r = self.podman.run("-f", name, "config", "-q", tool="docker-compose",
                            env=env, cwd=work, check=False)
        self.assertEqual(r.returncode, 0, r.stderr)

        project = "%s-%s" % (PREFIX, name.split(".")[1] if name.count(".") > 1 else "compose")
        compose = ["-p", project, "-f", name]
        self.addCleanup(self.podman.run, *compose, "down", "-v", tool="podman-compose", env=env,
                        cwd=work, check=False)
        self.podman.run(*compose, "up", "-d", tool="podman-compose", env=env, cwd=work,
                        timeout=300)
        admin = "http://127.0.0.1:%d" % admin_port
        wait_http(admin + "/readyz", timeout=ready_timeout)
        return project, "127.0.0.1:%d" % grpc_port, admin

    def commsgate_log(self, project):
        r = self.podman.run("logs", project + "_commsgate_1", check=False)
        return r.stdout + r.stderr

    def test_compose_file(self):
        project, target, _ = self.compose_up("docker-compose.yml")
        r = send_sms(target, "+14155550101")
        sim = harness.Sim("http://%s:8089" % self.podman.ip(project + "_twilio-sim_1"))
        got = [q for q in sim.requests("/Messages.json") if q["method"] == "POST"]
        self.assertEqual(len(got), 1, got)
        # The simulator's status callbacks reach commsgate by its service
        # name (COMMSGATE_PUBLIC_URL) and pass the signature check.
        with grpc.insecure_channel(target) as ch:
            stubs = harness.Stubs(ch)
            deadline = time.monotonic() + 20
            while True:
                m = stubs.GetMessage(stubs.messaging_pb2.GetMessageRequest(sid=r.sid), timeout=5)
                if m.status == "delivered" or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            self.assertEqual(m.status, "delivered")

    def test_compose_sentinel(self):
        """deploy/docker-compose.sentinel.yml: sends go through the master
        the sentinels name; its container stopped, they promote the replica
        and commsgate follows, every name resolved (a lookup that said "not
        known" once left commsgate deaf to the switch)."""
        project, target, admin = self.compose_up("docker-compose.sentinel.yml")
        self.assertTrue(send_sms(target, "+14155550103").sid.startswith("SM"))
        self.podman.run("stop", "-t", "1", project + "_redis-1_1")
        self.switched_and_sending(project, target, admin, "+14155550104")
        log = self.commsgate_log(project)
        self.assertIn('"event":"redis_master_switched"', log)
        self.assertIn('"host":"redis-2"', log)
        for bad in ("sentinel_failed", "sentinel_subscribe_failed", "not known"):
            self.assertNotIn(bad, log)
        self.sidecar_on(project, "docker-compose.sentinel.yml")

    def test_compose_cluster(self):
        """deploy/docker-compose.cluster.yml: the six nodes joined by
        redis-cluster-init, sends to numbers on every master, then a master
        stopped: its replica takes over and every number sends again."""
        project, target, admin = self.compose_up("docker-compose.cluster.yml", ready_timeout=120)
        numbers = ["+1415555%04d" % i for i in range(200, 212)]
        for n in numbers:
            self.assertTrue(self.send_logged(project, target, n).sid.startswith("SM"))
        first = project + "_redis-1_1"
        role = subprocess.run(["redis-cli", "-h", self.podman.ip(first), "ROLE"],
                              capture_output=True, text=True, check=True).stdout
        self.assertTrue(role.startswith("master"), role)  # --cluster create's first three

        # A replica that has not yet synced once will not take over (Redis
        # judges its data too old): that is the cluster's rule, not a
        # failover to test, so wait for every replica's first sync.
        def synced():
            for n in range(1, 7):
                info = subprocess.run(["redis-cli", "-h", self.podman.ip(
                    "%s_redis-%d_1" % (project, n)), "INFO", "replication"],
                    capture_output=True, text=True).stdout
                if "role:slave" in info and "master_link_status:up" not in info:
                    return False
            return True
        harness.wait_for(synced, "the replicas' first sync", timeout=60)
        self.podman.run("stop", "-t", "1", first)
        self.switched_and_sending(project, target, admin, *numbers)
        log = self.commsgate_log(project)
        self.assertIn('"event":"redis_cluster_map"', log)
        self.assertNotIn("not known", log)
        self.sidecar_on(project, "docker-compose.cluster.yml")

    def switched_and_sending(self, project, target, admin, *numbers):
        """Redis lost a master just now: commsgate goes unready, then ready
        again within 60 s, and each number sends."""
        wait_http(admin + "/readyz", want=503, timeout=30)
        wait_http(admin + "/readyz", timeout=60)
        for n in numbers:
            self.assertTrue(self.send_logged(project, target, n).sid.startswith("SM"))

    def send_logged(self, project, target, to):
        try:
            return send_sms(target, to)
        except grpc.RpcError as e:
            raise AssertionError("%s: %s\n%s" % (to, e, self.commsgate_log(project)))

    def play_sidecar(self, name, redis_url, sim_url, network=None):
        """deploy/k8s/sidecar.yaml under `podman kube play`, as Deployment
        PREFIX-name. Only what a real cluster would supply differs from the
        files as shipped: the image is the one built here, the app container
        (a placeholder image) is commsctl calling the sidecar, one replica,
        the Secret's REDIS_URL and the ConfigMap's Twilio URLs are this
        test's, and each port is published on the host's loopback only
        (podman 4.3 publishes every containerPort on the host). Returns
        probe(kind) (the probe's URL, as the kubelet would ask it), the
        commsgate container's name and the SID the app was told."""
        p = self.podman

        def load(file):
            with open(os.path.join(ROOT, "deploy/k8s", file)) as f:
                return [d for d in yaml.safe_load_all(f) if d]
        (cm,) = load("configmap.yaml")
        (secret,) = load("secret.example.yaml")
        cm["data"]["TWILIO_API_BASE_URL"] = sim_url
        cm["data"]["TWILIO_VERIFY_BASE_URL"] = sim_url
        secret["stringData"]["REDIS_URL"] = redis_url

        docs = load("sidecar.yaml")
        (dep,) = [d for d in docs if d["kind"] == "Deployment"]
        app_name = "%s-%s" % (PREFIX, name)
        dep["metadata"]["name"] = app_name
        dep["spec"]["replicas"] = 1
        pod = dep["spec"]["template"]["spec"]
        host_ports = {}
        for c in pod["containers"]:
            c["image"] = IMAGE
            if c["name"] == "app":
                # The app: calls the sidecar on the pod's loopback once it
                # serves, then idles (a Deployment restarts what exits).
                c["command"] = ["/bin/sh", "-c",
                                "until commsctl --addr %s health; do sleep 0.2; done; "
                                "commsctl --json --addr %s sms send --to +14155550102 "
                                "--body 'from the app container'; exec sleep infinity"
                                % (APP_TARGET, APP_TARGET)]
            for port in c.get("ports", []):
                port["hostIP"] = "127.0.0.1"
                port["hostPort"] = host_ports.setdefault(port["name"], harness.free_port())
            for ref in c.get("envFrom", []):
                if "secretRef" in ref:
                    ref["secretRef"]["name"] = app_name + "-secrets"
        (cg,) = [c for c in pod["containers"] if c["name"] == "commsgate"]
        self.assertEqual(grpc_addr_of(cg), APP_TARGET)  # loopback: the app its one caller

        # podman 4.3 reads a Secret the pod refers to from its own secret
        # store, as JSON of base64 values (it cannot play a Secret document).
        values = {k: base64.b64encode(v.encode()).decode()
                  for k, v in secret["stringData"].items()}
        secret_file = os.path.join(self.dir, app_name + "-secret.json")
        with open(secret_file, "w") as f:
            json.dump(values, f)
        p.run("secret", "create", app_name + "-secrets", secret_file)
        self.addCleanup(p.run, "secret", "rm", app_name + "-secrets", check=False)
        play = os.path.join(self.dir, app_name + "-play.yaml")
        with open(play, "w") as f:
            yaml.safe_dump_all([cm, dep], f)
        self.addCleanup(p.run, "kube", "down", play, check=False)
        p.run("kube", "play", *(["--network", network] if network else []), play, timeout=300)

        def probe(kind):
            get = cg[kind]["httpGet"]
            return "http://127.0.0.1:%d%s" % (host_ports[get["port"]], get["path"])
        wait_http(probe("readinessProbe"), timeout=60)
        wait_http(probe("livenessProbe"))

        # The app's view: it sent through the sidecar on the pod's loopback.
        # (Read from its log, not with podman exec, which runs commands in
        # the wrong root when podman itself runs in a chroot.)
        app = app_name + "-pod-0-app"
        deadline = time.monotonic() + 30
        while '"sid"' not in p.run("logs", app, check=False).stdout:
            self.assertLess(time.monotonic(), deadline, p.run("logs", app, check=False).stdout)
            time.sleep(0.2)
        out = [line for line in p.run("logs", app).stdout.splitlines() if '"sid"' in line]
        return probe, app_name + "-pod-0-commsgate", json.loads(out[-1])["sid"]

    def test_sidecar_manifest(self):
        """deploy/k8s/sidecar.yaml under `podman kube play` with a one-node
        Redis: the app sends through the sidecar; Redis stopped, the pod is
        unready, never restarted."""
        p = self.podman
        rd = self.container("redis", REDIS_IMAGE, "redis-server", "--protected-mode", "no",
                            "--save", "")  # in its container's own /data
        sim = self.container("sim2", "--entrypoint", "/usr/local/bin/twilio-sim", IMAGE,
                             "--listen", "0.0.0.0:8089")
        redis_ip, sim_ip = p.ip(rd), p.ip(sim)
        probe, name, sid = self.play_sidecar("app", "redis://%s:6379/0" % redis_ip,
                                             "http://%s:8089" % sim_ip)
        self.assertTrue(sid.startswith("SM"), sid)
        got = [q for q in harness.Sim("http://%s:8089" % sim_ip).requests("/Messages.json")
               if q["method"] == "POST"]
        self.assertEqual(len(got), 1, got)
        self.assertEqual(p.run("inspect", "-f", "{{.Config.User}}", name).stdout.strip(),
                         "10001:10001")
        self.assertEqual(p.run("inspect", "-f", "{{.HostConfig.ReadonlyRootfs}}",
                               name).stdout.strip(), "true")

        # Redis down: unready (no traffic), alive (no restart).
        p.run("stop", "-t", "1", rd)
        wait_http(probe("readinessProbe"), want=503, timeout=30)
        wait_http(probe("livenessProbe"), want=200)
        restarts = p.run("inspect", "-f", "{{.RestartCount}}", name).stdout.strip()
        self.assertEqual(restarts, "0")

    def sidecar_on(self, project, file):
        """The sidecar manifest on a compose file's network, with that
        file's REDIS_URL in the Secret: the Kubernetes example of its Redis
        mode, run against that Redis."""
        with open(os.path.join(ROOT, "deploy", file)) as f:
            url = yaml.safe_load(f)["services"]["commsgate"]["environment"]["REDIS_URL"]
        _, _, sid = self.play_sidecar("app-" + project.rsplit("-", 1)[1], url,
                                      "http://twilio-sim:8089", network=project + "_default")
        self.assertTrue(sid.startswith("SM"), sid)


def grpc_addr_of(container):
    for e in container.get("env", []):
        if e["name"] == "COMMSGATE_GRPC_ADDR":
            return e["value"]
    raise AssertionError("the sidecar names no COMMSGATE_GRPC_ADDR")


if __name__ == "__main__":
    unittest.main()
