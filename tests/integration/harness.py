"""Start real processes on loopback for the integration tests.

Every test gets its own redis-server, simulator and daemon on free ports, so
tests can run in parallel under ctest -j and never touch anything but 127.0.0.1.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

BIN_DIR = os.environ.get("COMMSGATE_BIN_DIR", os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "bin"))
SRC_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# The simulator's documented test values (README, "The Twilio simulator").
# They open nothing anywhere but the simulator.
SIM_ACCOUNT_SID = "AC00000000000000000000000000000000"
SIM_AUTH_TOKEN = "simulator-auth-token"
SIM_VERIFY_SID = "VA00000000000000000000000000000000"
SIM_FROM = "+15005550006"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited with %s before listening on %d"
                               % (proc.returncode, port))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError("nothing listening on port %d after %.1fs" % (port, timeout))


class Proc:
    """A child process whose stderr goes to a temp file we can read back."""

    def __init__(self, name, argv, env=None, port=None, timeout=10.0):
        self.name = name
        self._final = None
        self.log = tempfile.NamedTemporaryFile(
            prefix="commsgate-%s-" % name, suffix=".log", delete=False)
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        self.proc = subprocess.Popen(argv, env=full_env, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.port = port
        if port is not None:
            try:
                wait_port(port, timeout, self.proc)
            except Exception:
                self.stop()
                raise RuntimeError("%s did not start:\n%s" % (name, self.output()))

    @property
    def pid(self):
        return self.proc.pid

    def output(self):
        if self._final is not None:
            return self._final
        with open(self.log.name, "r", errors="replace") as f:
            return f.read()

    def _collect(self):
        """Keeps the output in memory once the process is gone, and removes
        the temp file, so test runs leave nothing behind."""
        if self._final is None and self.proc.poll() is not None:
            self._final = self.output()
            self.log.close()
            os.unlink(self.log.name)

    def signal(self, sig):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout):
        rc = self.proc.wait(timeout=timeout)
        self._collect()
        return rc

    def stop(self, timeout=10.0):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._collect()
        return self.proc.returncode


def wait_for(cond, what, timeout=20.0, step=0.1):
    """Until cond() is true (an exception counts as not yet), or fails
    saying what it waited for."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except Exception:
            pass
        time.sleep(step)
    raise AssertionError("timed out waiting for %s" % what)


def redis_dir():
    """A scratch directory for one redis-server: it loads a dump.rdb found
    where it runs, even with --save "", and a replica's full sync writes one
    there (a dump left in tests/integration once filled other tests' Redis)."""
    import atexit
    d = tempfile.mkdtemp(prefix="commsgate-redis-")
    atexit.register(shutil.rmtree, d, True)
    return d


def start_redis(port=None):
    port = port or free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", redis_dir(),
            "--save", "", "--appendonly", "no", "--daemonize", "no"]
    return Proc("redis", argv, port=port)


# Ports of the cluster nodes started here: redis_cli follows redirects there.
_CLUSTER_PORTS = set()


def cluster_port():
    """A free port for a cluster node: at most 55535, with the port 10000
    above it (the cluster bus) free too."""
    import random
    for _ in range(200):
        port = random.randint(20000, 55535)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair for a cluster node")


class RedisCluster:
    """A Redis Cluster on loopback: `masters` masters, each with `replicas`
    replicas (redis-server --cluster-enabled yes, joined by redis-cli
    --cluster create). .port is a node's (for redis_cli), .url commsgate's
    REDIS_URL."""

    def __init__(self, masters=3, replicas=1, node_timeout_ms=1000):
        self.dir = redis_dir()
        self.nodes = {}
        try:
            for _ in range(masters * (1 + replicas)):
                port = cluster_port()
                _CLUSTER_PORTS.add(port)
                self.nodes[port] = self.start_node(port, node_timeout_ms)
            subprocess.run(["redis-cli", "--cluster", "create"] +
                           ["127.0.0.1:%d" % p for p in self.nodes] +
                           ["--cluster-replicas", str(replicas), "--cluster-yes"],
                           check=True, capture_output=True, timeout=60)
            self.wait_ok()
        except Exception:
            self.stop()
            raise
        self.port = next(iter(self.nodes))
        self.url = "redis-cluster://" + ",".join("127.0.0.1:%d" % p for p in list(self.nodes)[:2])

    def start_node(self, port, node_timeout_ms):
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", self.dir,
                "--save", "", "--appendonly", "no", "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes-%d.conf" % port,
                "--cluster-node-timeout", str(node_timeout_ms)]
        return Proc("redis-%d" % port, argv, port=port)

    def wait_ok(self, timeout=30.0):
        """Until every node running says cluster_state:ok, and every replica
        has synced (one that never did cannot take over from its master)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                up = [p for p, n in self.nodes.items() if n.proc.poll() is None]
                if all("cluster_state:ok" in redis_cli(p, "CLUSTER", "INFO") for p in up) and \
                        all("role:master" in info or "master_link_status:up" in info
                            for info in (redis_cli(p, "INFO", "replication") for p in up)):
                    return
            except subprocess.CalledProcessError:
                pass
            time.sleep(0.1)
        raise AssertionError("the cluster did not become ok")

    def masters(self):
        """{port: node id} of the masters holding slots now."""
        out = {}
        for p, n in self.nodes.items():
            if n.proc.poll() is not None:
                continue
            for line in redis_cli(p, "CLUSTER", "NODES").splitlines():
                f = line.split()
                if "master" in f[2] and "fail" not in f[2] and len(f) > 8:
                    out[int(f[1].split(":")[1].split("@")[0])] = f[0]
            return out
        raise AssertionError("no node running")

    def stop(self):
        for n in self.nodes.values():
            n.stop()


_SHARED_CLUSTER = None


def shared_cluster():
    """One cluster for every Stack(cluster=True) of this process, emptied
    for each (FLUSHALL on every master): a cluster takes seconds to form."""
    global _SHARED_CLUSTER
    import atexit
    if _SHARED_CLUSTER and any(n.proc.poll() is not None for n in _SHARED_CLUSTER.nodes.values()):
        _SHARED_CLUSTER.stop()  # a test stopped Redis: a new cluster
        _SHARED_CLUSTER = None
    if _SHARED_CLUSTER is None:
        _SHARED_CLUSTER = RedisCluster()
        atexit.register(_SHARED_CLUSTER.stop)
    for port in _SHARED_CLUSTER.masters():
        subprocess.run(["redis-cli", "-p", str(port), "FLUSHALL"], check=True,
                       capture_output=True)
    return _SHARED_CLUSTER


def start_sim(extra_args=(), env=None, tls=None):
    """The simulator; with tls (a TestCA) it serves HTTPS only."""
    port = free_port()
    sim_env = {"TWILIO_ACCOUNT_SID": SIM_ACCOUNT_SID, "TWILIO_AUTH_TOKEN": SIM_AUTH_TOKEN}
    if env:
        sim_env.update(env)
    argv = [os.path.join(BIN_DIR, "twilio-sim"), "--listen", "127.0.0.1:%d" % port]
    if tls:
        argv += ["--tls-cert", tls.cert_file, "--tls-key", tls.key_file]
    argv += list(extra_args)
    p = Proc("sim", argv, env=sim_env, port=port)
    p.url = "%s://127.0.0.1:%d" % ("https" if tls else "http", port)
    p.tls = tls
    if tls:
        _CA_FOR[p.url] = tls.ca_file  # so http_json (and Sim) trust it
    return p


# The test CA of each simulator serving HTTPS, by its base URL.
_CA_FOR = {}


def daemon_env(redis_port, sim_url, grpc_port, http_port, extra=None, admin_port=None):
    env = {
        "COMMSGATE_GRPC_ADDR": "127.0.0.1:%d" % grpc_port,
        "COMMSGATE_HTTP_ADDR": "127.0.0.1:%d" % http_port,
        "COMMSGATE_ADMIN_ADDR": "127.0.0.1:%d" % (admin_port or free_port()),
        "COMMSGATE_PUBLIC_URL": "http://127.0.0.1:%d" % http_port,
        "REDIS_URL": "redis://127.0.0.1:%d/0" % redis_port,
        "TWILIO_ACCOUNT_SID": SIM_ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": SIM_AUTH_TOKEN,
        "TWILIO_PHONE_NUMBER": SIM_FROM,
        "TWILIO_VERIFY_SERVICE_SID": SIM_VERIFY_SID,
        "TWILIO_API_BASE_URL": sim_url,
        "TWILIO_VERIFY_BASE_URL": sim_url,
        # As the Dockerfile and make run set it: GnuTLS (loaded by libcurl,
        # unused) skips its start-up work.
        "GNUTLS_NO_IMPLICIT_INIT": "1",
    }
    if extra:
        env.update(extra)
    return env


def start_daemon(redis_port, sim_url, extra_env=None, args=()):
    # Something answering on the port is not proof enough: a process of a
    # test running beside this one may have taken it between free_port()
    # and our bind (then commsgate exits, and the tests would talk to the
    # other). commsgate says "ready" once every listener is its own; a port
    # lost that way is tried again with new ones.
    for attempt in range(3):
        grpc_port, http_port, admin_port = free_port(), free_port(), free_port()
        env = daemon_env(redis_port, sim_url, grpc_port, http_port, extra_env, admin_port)
        try:
            p = Proc("commsgate", [os.path.join(BIN_DIR, "commsgate")] + list(args),
                     env=env, port=grpc_port)
        except RuntimeError as e:
            if "listen_failed" in str(e) and attempt < 2:
                continue
            raise
        deadline = time.monotonic() + 10
        while '"event":"ready"' not in p.output():
            if p.proc.poll() is not None or time.monotonic() > deadline:
                p.stop()
                if "listen_failed" in p.output() and attempt < 2:
                    break
                raise RuntimeError("commsgate did not start:\n%s" % p.output())
            time.sleep(0.02)
        else:
            p.grpc_port = grpc_port
            p.grpc_target = "127.0.0.1:%d" % grpc_port
            p.http_port = http_port
            p.admin_port = admin_port  # /metrics, /healthz, /readyz
            return p
    raise AssertionError("unreachable")


def thread_count(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise RuntimeError("no thread count for pid %d" % pid)


def thread_names(pid):
    names = []
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                names.append(f.read().strip())
        except OSError:
            pass
    return names


def http_json(method, url, body=None, headers=None, timeout=5.0):
    data = None
    hdrs = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    ctx = None
    for base, ca in _CA_FOR.items():
        if url.startswith(base + "/"):
            import ssl
            ctx = ssl.create_default_context(cafile=ca)
    with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
        raw = r.read()
        return r.status, (json.loads(raw) if raw else None)


# A program linked against the ASan build of libcommsgate must be built with
# the same sanitizers (the ASan runtime has to come first).
SANITIZE_CFLAGS = (["-fsanitize=address,undefined"]
                   if os.environ.get("COMMSGATE_SANITIZE") == "ON" else [])


def install_client(prefix):
    """`cmake --install` of the build into prefix, as a user installs
    libcommsgate and commsctl; returns an environment whose PKG_CONFIG_PATH
    finds commsgate.pc and whose PATH starts with the installed bin/."""
    build = os.path.normpath(os.path.join(BIN_DIR, ".."))
    subprocess.run(["cmake", "--install", build, "--prefix", prefix, "--component",
                    "Unspecified"], check=True, capture_output=True)
    pc = [os.path.join(d, "pkgconfig") for d, _, _ in os.walk(prefix)
          if os.path.isfile(os.path.join(d, "pkgconfig", "commsgate.pc"))][0]
    return dict(os.environ, PKG_CONFIG_PATH=pc,
                PATH=os.path.join(prefix, "bin") + os.pathsep + os.environ.get("PATH", ""))


def http_get(url, timeout=5.0):
    """(status, body) of a GET, error statuses included (the probes)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metric(admin_port, name):
    """The value of an unlabelled metric on commsgate's /metrics."""
    _, text = http_get("http://127.0.0.1:%d/metrics" % admin_port)
    for line in text.splitlines():
        if line.startswith(name + " "):
            return int(line.split()[1])
    raise AssertionError("no %s on /metrics" % name)


def inbound_stop(http_port, frm, sid=None):
    """A STOP from frm (as message sid, else a new one), as Twilio would
    post it to commsgate's webhook port, signed by Twilio's own helper
    library; the HTTP status answered."""
    import urllib.parse
    import uuid
    from twilio.request_validator import RequestValidator
    path = "/webhooks/twilio/messages/inbound"
    params = {"MessageSid": sid or "SM" + uuid.uuid4().hex, "AccountSid": SIM_ACCOUNT_SID,
              "From": frm, "To": SIM_FROM, "Body": "STOP"}
    public = "http://127.0.0.1:%d" % http_port
    sig = RequestValidator(SIM_AUTH_TOKEN).compute_signature(public + path, params)
    req = urllib.request.Request(public + path, data=urllib.parse.urlencode(params).encode(),
                                 method="POST", headers={"X-Twilio-Signature": sig})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def post_stops(stops, stop, http_port_of):
    """Until stop is set: a STOP from a new number every 50 ms, to the
    webhook port http_port_of(i) names, each one's status (or error) kept in
    stops[number]. For a thread beside a load."""
    i = 0
    while not stop.is_set():
        i += 1
        frm = "+1415557%04d" % i
        try:
            stops[frm] = inbound_stop(http_port_of(i), frm)
        except OSError as e:
            stops[frm] = repr(e)
        time.sleep(0.05)


def node_metric(admin_port, name):
    """{node: value} of a per-Redis-node metric (commsgate_redis_node_*)."""
    _, text = http_get("http://127.0.0.1:%d/metrics" % admin_port)
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r'^%s\{node="([^"]*)"\} (\d+)$' % name, text, re.M)}


def redis_cli(port, *args):
    follow = ["-c"] if port in _CLUSTER_PORTS else []
    out = subprocess.run(["redis-cli", "-p", str(port)] + follow + [str(a) for a in args],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


def protos():
    """The Python messages generated from proto/ at build time (protoc
    --python_out). They are imported as top-level modules because the
    health one's package, grpc.health.v1, would shadow grpcio's own `grpc`."""
    import sys
    out = os.environ.get("COMMSGATE_PY_OUT", os.path.join(BIN_DIR, "..", "py"))
    for sub in ("commsgate/v1", "grpc/health/v1", "google/rpc"):
        path = os.path.join(out, sub)
        if path not in sys.path:
            sys.path.insert(0, path)
    import health_pb2
    import messaging_pb2
    return health_pb2, messaging_pb2


class Stubs:
    """Unary and streaming callables for every method, made with grpcio's
    generic API from the generated messages (no grpc_tools needed)."""

    def __init__(self, channel):
        import grpc  # noqa: F401  (grpcio, from Debian)
        health, msg = protos()
        self.health_pb2, self.messaging_pb2 = health, msg

        def unary(path, req, resp):
            return channel.unary_unary(path, request_serializer=req.SerializeToString,
                                       response_deserializer=resp.FromString)
        self.Check = unary("/grpc.health.v1.Health/Check", health.HealthCheckRequest,
                           health.HealthCheckResponse)
        self.Watch = channel.unary_stream(
            "/grpc.health.v1.Health/Watch",
            request_serializer=health.HealthCheckRequest.SerializeToString,
            response_deserializer=health.HealthCheckResponse.FromString)
        svc = msg.DESCRIPTOR.services_by_name["MessagingService"]
        for m in svc.methods:
            req = getattr(msg, m.input_type.name)
            resp = getattr(msg, m.output_type.name)
            setattr(self, m.name, unary("/commsgate.v1.MessagingService/%s" % m.name, req, resp))


# The status of an answer whose outcome is unknown (Twilio may have acted).
OUTCOME_UNKNOWN_STATUS = None  # set below, once grpc is importable


def _statuses():
    global OUTCOME_UNKNOWN_STATUS
    import grpc
    OUTCOME_UNKNOWN_STATUS = grpc.StatusCode.UNKNOWN


class TestCA:
    """A CA made now (OpenSSL) and a certificate for 127.0.0.1 it signed, for
    the simulator's HTTPS. Give commsgate `ca_file` as
    COMMSGATE_TWILIO_CA_FILE."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="commsgate-tls-")
        d = lambda name: os.path.join(self.dir, name)
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        run = lambda *a: subprocess.run(["openssl"] + list(a), check=True, capture_output=True)
        run("req", "-x509", *ec, "-keyout", d("ca.key"), "-out", d("ca.pem"), "-days", "1",
            "-subj", "/CN=commsgate test CA")
        run("req", *ec, "-keyout", d("server.key"), "-out", d("server.csr"),
            "-subj", "/CN=127.0.0.1")
        with open(d("san.ext"), "w") as f:
            f.write("subjectAltName=IP:127.0.0.1\n")
        run("x509", "-req", "-in", d("server.csr"), "-CA", d("ca.pem"), "-CAkey", d("ca.key"),
            "-CAcreateserial", "-out", d("server.pem"), "-days", "1", "-extfile", d("san.ext"))
        self.ca_file = d("ca.pem")
        self.cert_file, self.key_file = d("server.pem"), d("server.key")

    def issue(self, name, cn, san=None, client=False):
        """Another certificate this CA signs: (cert_file, key_file). san: an
        extension value such as "IP:127.0.0.1" or "DNS:billing.internal"."""
        d = lambda f: os.path.join(self.dir, f)
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        run = lambda *a: subprocess.run(["openssl"] + list(a), check=True, capture_output=True)
        run("req", *ec, "-keyout", d(name + ".key"), "-out", d(name + ".csr"), "-subj", "/CN=" + cn)
        with open(d(name + ".ext"), "w") as f:
            if san:
                f.write("subjectAltName=%s\n" % san)
            f.write("extendedKeyUsage=%s\n" % ("clientAuth" if client else "serverAuth"))
        run("x509", "-req", "-in", d(name + ".csr"), "-CA", d("ca.pem"), "-CAkey", d("ca.key"),
            "-CAcreateserial", "-out", d(name + ".pem"), "-days", "1", "-extfile", d(name + ".ext"))
        return d(name + ".pem"), d(name + ".key")

    def bundle(self):
        """The system's CA bundle with this CA added: what commsgate parses on
        its default path, trusting the simulator too."""
        out = os.path.join(self.dir, "bundle.pem")
        with open("/etc/ssl/certs/ca-certificates.crt") as sysf, open(self.ca_file) as ca, \
                open(out, "w") as f:
            f.write(sysf.read() + ca.read())
        return out

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class Stack:
    """redis-server + simulator (when built) + commsgate, all on loopback;
    with tls=True the simulator serves HTTPS with a CA made now, which
    commsgate is given as COMMSGATE_TWILIO_CA_FILE. channel_creds: the
    grpc.ChannelCredentials the stack's own channel uses (for a daemon with
    TLS on its gRPC port); None: plaintext."""

    def __init__(self, env=None, with_sim=True, tls=False, channel_creds=None, cluster=False):
        import grpc
        _statuses()
        self.redis = shared_cluster() if cluster else start_redis()
        self.shared_redis = cluster
        self.sim = self.ca = None
        sim_url = "http://127.0.0.1:1"
        env = dict(env or {})
        if cluster:
            env["REDIS_URL"] = self.redis.url
        try:
            if with_sim:
                if tls:
                    self.ca = TestCA()
                    env["COMMSGATE_TWILIO_CA_FILE"] = self.ca.ca_file
                self.sim = start_sim(tls=self.ca)
                sim_url = self.sim.url
            self.sim_url = sim_url
            self.daemon = start_daemon(self.redis.port, sim_url, extra_env=env)
        except Exception:
            # Nothing outlives a failed start.
            if self.sim:
                self.sim.stop()
            if self.ca:
                self.ca.remove()
            if not self.shared_redis:
                self.redis.stop()
            raise
        if channel_creds is not None:
            self.channel = grpc.secure_channel(self.daemon.grpc_target, channel_creds)
        else:
            self.channel = grpc.insecure_channel(self.daemon.grpc_target)
        self.stubs = Stubs(self.channel)

    def wait_serving(self, want=1, timeout=5.0):
        health = self.stubs.health_pb2
        deadline = time.monotonic() + timeout
        status = None
        while time.monotonic() < deadline:
            status = self.stubs.Check(health.HealthCheckRequest(), timeout=1).status
            if status == want:
                return time.monotonic()
            time.sleep(0.02)
        raise AssertionError("health stayed %s, wanted %s" % (status, want))

    def close(self):
        self.channel.close()
        rc = self.daemon.stop()
        if self.sim:
            self.sim.stop()
        if self.ca:
            self.ca.remove()
        if not self.shared_redis:
            self.redis.stop()
        return rc


def status_details(rpc_error):
    """The google.rpc.Status commsgate put in grpc-status-details-bin, with
    its ErrorInfo and RetryInfo unpacked: (status, error_info, retry_info)."""
    protos()
    import status_pb2
    for key, value in rpc_error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            st = status_pb2.Status.FromString(value)
            info = retry = None
            for d in st.details:
                if d.type_url.endswith("google.rpc.ErrorInfo"):
                    info = status_pb2.ErrorInfo.FromString(d.value)
                elif d.type_url.endswith("google.rpc.RetryInfo"):
                    retry = status_pb2.RetryInfo.FromString(d.value)
            return st, info, retry
    return None, None, None


def trailer(rpc_error, key):
    for k, v in rpc_error.trailing_metadata() or ():
        if k == key:
            return v
    return None


class Sim:
    """The simulator's test endpoints."""

    def __init__(self, url):
        self.url = url

    def requests(self, suffix=None):
        q = "?path_suffix=" + suffix if suffix else ""
        return http_json("GET", self.url + "/__sim/requests" + q)[1]

    def params(self, request):
        return dict(request["params"])

    def fault(self, **kw):
        http_json("POST", self.url + "/__sim/faults", kw)

    def config(self, **kw):
        http_json("POST", self.url + "/__sim/config", kw)

    def clear_faults(self):
        """Forgets the queued faults only (reset forgets everything)."""
        http_json("POST", self.url + "/__sim/faults/clear", {})

    def verifications(self):
        return http_json("GET", self.url + "/__sim/verifications")[1]

    def made(self, what, to):
        """What the simulator made for `to`, from its own list (what, one of
        "Messages" and "Calls"), newest first."""
        import base64
        import urllib.parse
        auth = base64.b64encode(("%s:%s" % (SIM_ACCOUNT_SID, SIM_AUTH_TOKEN)).encode()).decode()
        url = "%s/2010-04-01/Accounts/%s/%s.json?%s" % (
            self.url, SIM_ACCOUNT_SID, what, urllib.parse.urlencode({"To": to, "PageSize": 1000}))
        page = http_json("GET", url, headers={"Authorization": "Basic " + auth})[1]
        return page[what.lower()]

    def reset(self):
        http_json("POST", self.url + "/__sim/reset", {})
