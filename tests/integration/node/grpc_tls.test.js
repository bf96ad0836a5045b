// Mutual TLS on the gRPC port from Node's @grpc/grpc-js, with a CA and
// certificates made now by OpenSSL: no client certificate is refused at the
// handshake, the right one gets through.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const { startStack, waitStatus, grpc } = require('./stack');

function makeCerts() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'commsgate-node-tls-'));
  const f = (n) => path.join(dir, n);
  const ssl = (...a) => execFileSync('openssl', a, { stdio: 'ignore' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  ssl('req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '1',
    '-subj', '/CN=node test CA');
  for (const [name, ext] of [['server', 'subjectAltName=IP:127.0.0.1'],
    ['client', 'extendedKeyUsage=clientAuth']]) {
    ssl('req', ...ec, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', `/CN=${name}`);
    fs.writeFileSync(f(`${name}.ext`), `${ext}\n`);
    ssl('x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'),
      '-CAcreateserial', '-out', f(`${name}.pem`), '-days', '1', '-extfile', f(`${name}.ext`));
  }
  return { dir, f };
}

test('mutual TLS from @grpc/grpc-js', async (t) => {
  const { dir, f } = makeCerts();
  const read = (n) => fs.readFileSync(f(n));
  const good = grpc.credentials.createSsl(read('ca.pem'), read('client.key'), read('client.pem'));
  const s = await startStack({
    COMMSGATE_GRPC_TLS_CERT_FILE: f('server.pem'),
    COMMSGATE_GRPC_TLS_KEY_FILE: f('server.key'),
    COMMSGATE_GRPC_TLS_CLIENT_CA_FILE: f('ca.pem'),
  }, good);
  try {
    await waitStatus(s.health, 'SERVING');
    await t.test('the right client certificate sends', async () => {
      const res = await new Promise((resolve, reject) => {
        s.messaging.SendSMS({ to: '+14155550100', body: 'tls' }, { deadline: Date.now() + 10000 },
          (err, r) => (err ? reject(err) : resolve(r)));
      });
      assert.match(res.sid, /^SM[0-9a-f]{32}$/);
    });
    await t.test('no client certificate is refused at the handshake', async () => {
      const anon = new s.pkg.commsgate.v1.MessagingService(s.target,
        grpc.credentials.createSsl(read('ca.pem')));
      const err = await new Promise((resolve) => {
        anon.SendSMS({ to: '+14155550100', body: 'x' }, { deadline: Date.now() + 3000 },
          (e) => resolve(e));
      });
      anon.close();
      assert.ok(err, 'a call without a client certificate got through');
      assert.strictEqual(err.code, grpc.status.UNAVAILABLE);
    });
    const sent = await s.simRequests('Messages.json');
    assert.strictEqual(sent.length, 1);
  } finally {
    assert.strictEqual(await s.stop(), 0, s.log());
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
