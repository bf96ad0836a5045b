// Starting redis-server, the simulator and commsgate on free loopback ports
// for the Node tests, and the clients @grpc/grpc-js builds from proto/.
'use strict';
const path = require('node:path');
const net = require('node:net');
const { spawn } = require('node:child_process');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const SRC = path.resolve(__dirname, '..', '..', '..');
const BIN = process.env.COMMSGATE_BIN_DIR || path.join(SRC, 'build', 'bin');
const SIM_ACCOUNT_SID = 'AC00000000000000000000000000000000';

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

async function waitPort(port, proc, ms = 10000) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (proc.exitCode !== null) throw new Error(`exited ${proc.exitCode} before listening`);
    const ok = await new Promise((resolve) => {
      const c = net.connect(port, '127.0.0.1', () => { c.end(); resolve(true); });
      c.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`nothing on port ${port}`);
}

function load() {
  const opts = { keepCase: true, enums: String, defaults: true, includeDirs: [path.join(SRC, 'proto')] };
  const def = protoLoader.loadSync(['commsgate/v1/messaging.proto', 'grpc/health/v1/health.proto'], opts);
  return grpc.loadPackageDefinition(def);
}

// creds: the channel credentials of the stack's clients (TLS to a daemon
// given certificates in extraEnv); default plaintext.
async function startStack(extraEnv = {}, creds = null) {
  const redisPort = await freePort();
  const grpcPort = await freePort();
  const httpPort = await freePort();
  const adminPort = await freePort();
  const simPort = await freePort();
  const redis = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1',
    '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  await waitPort(redisPort, redis);
  const sim = spawn(path.join(BIN, 'twilio-sim'), ['--listen', `127.0.0.1:${simPort}`], {
    env: { ...process.env, TWILIO_ACCOUNT_SID: SIM_ACCOUNT_SID, TWILIO_AUTH_TOKEN: 'simulator-auth-token' },
    stdio: 'ignore',
  });
  await waitPort(simPort, sim);
  let log = '';
  const daemon = spawn(path.join(BIN, 'commsgate'), [], {
    env: {
      ...process.env,
      COMMSGATE_GRPC_ADDR: `127.0.0.1:${grpcPort}`,
      COMMSGATE_HTTP_ADDR: `127.0.0.1:${httpPort}`,
      COMMSGATE_ADMIN_ADDR: `127.0.0.1:${adminPort}`,
      REDIS_URL: `redis://127.0.0.1:${redisPort}/0`,
      TWILIO_ACCOUNT_SID: SIM_ACCOUNT_SID,
      TWILIO_AUTH_TOKEN: 'simulator-auth-token',
      TWILIO_PHONE_NUMBER: '+15005550006',
      TWILIO_API_BASE_URL: `http://127.0.0.1:${simPort}`,
      TWILIO_VERIFY_BASE_URL: `http://127.0.0.1:${simPort}`,
      COMMSGATE_SEND_RATE: '100000',
      TWILIO_VERIFY_SERVICE_SID: 'VA00000000000000000000000000000000',
      ...extraEnv,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  daemon.stderr.on('data', (d) => { log += d; });
  // Something answering on the port is not proof enough: a process of a
  // test running beside this one may have taken it between freePort() and
  // our bind (commsgate then exits). It says "ready" once every listener is
  // its own.
  await waitPort(grpcPort, daemon);
  for (const until = Date.now() + 10000; !log.includes('"event":"ready"');) {
    if (daemon.exitCode !== null || Date.now() > until) {
      redis.kill('SIGTERM');
      sim.kill('SIGTERM');
      throw new Error(`commsgate did not start:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  const pkg = load();
  const target = `127.0.0.1:${grpcPort}`;
  const health = new pkg.grpc.health.v1.Health(target, creds || grpc.credentials.createInsecure());
  const messaging = new pkg.commsgate.v1.MessagingService(target,
    creds || grpc.credentials.createInsecure());
  const stop = () => new Promise((resolve) => {
    health.close();
    messaging.close();
    const done = (code) => { redis.kill('SIGTERM'); sim.kill('SIGTERM'); resolve(code); };
    if (daemon.exitCode !== null || daemon.signalCode !== null) {
      done(daemon.exitCode); // gone already: waiting for 'exit' would hang the test
      return;
    }
    daemon.on('exit', done);
    daemon.kill('SIGTERM');
  });
  const simUrl = `http://127.0.0.1:${simPort}`;
  const simRequests = async (suffix) => {
    const r = await fetch(`${simUrl}/__sim/requests${suffix ? `?path_suffix=${suffix}` : ''}`);
    return r.json();
  };
  return { redis, redisPort, daemon, health, messaging, stop, simUrl, simRequests, httpPort,
    adminPort, target, pkg, log: () => log };
}

function check(health, service = '') {
  return new Promise((resolve, reject) => {
    health.Check({ service }, { deadline: Date.now() + 2000 }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

async function waitStatus(health, want, ms = 5000) {
  const until = Date.now() + ms;
  let last;
  while (Date.now() < until) {
    last = (await check(health)).status;
    if (last === want) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`health stayed ${last}, wanted ${want}`);
}


// The google.rpc.Status commsgate sends in grpc-status-details-bin, decoded
// with protobufjs (a dependency of @grpc/proto-loader) from proto/.
function statusDetails(err) {
  const protobuf = require('protobufjs');
  const root = new protobuf.Root().loadSync(path.join(SRC, 'proto', 'google', 'rpc', 'status.proto'), { keepCase: true });
  const [bin] = err.metadata.get('grpc-status-details-bin');
  if (!bin) return null;
  const st = root.lookupType('google.rpc.Status').decode(bin);
  const out = { code: st.code, message: st.message };
  for (const d of st.details) {
    const name = d.type_url.split('/').pop();
    out[name.split('.').pop()] = root.lookupType(name).decode(d.value);
  }
  return out;
}

function unary(client, method, req, ms = 10000, metadata) {
  return new Promise((resolve) => {
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(metadata || {})) md.set(k, v);
    client[method](req, md, { deadline: Date.now() + ms }, (err, res) => resolve({ err, res }));
  });
}

module.exports = { SIM_ACCOUNT_SID, freePort, startStack, check, waitStatus, statusDetails, unary, grpc };
