// Webhook signatures made by Twilio's own Node helper library (npm twilio:
// getExpectedTwilioSignature, getExpectedBodyHash) are accepted, for many
// URLs and parameter sets (unicode, repeated names, query strings, ports);
// altered ones are refused.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const twilio = require('twilio');

const { startStack } = require('./stack');

const TOKEN = 'simulator-auth-token';
const PUBLIC = 'https://hooks.example.com';
const INBOUND = '/webhooks/twilio/messages/inbound';

function encode(params) {
  const parts = [];
  for (const [k, v] of Object.entries(params)) {
    for (const one of Array.isArray(v) ? v : [v]) {
      parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(one)}`);
    }
  }
  return parts.join('&');
}

async function post(s, path, body, headers) {
  const r = await fetch(`http://127.0.0.1:${s.httpPort}${path}`, { method: 'POST', body, headers });
  return { status: r.status, text: await r.text() };
}

let n = 0;
function inbound(extra) {
  n += 1;
  return { MessageSid: `SM${String(n).padStart(32, '0')}`, From: '+14155550100', To: '+15005550006', ...extra };
}

test('signatures from twilio-node', async (t) => {
  const s = await startStack({ COMMSGATE_PUBLIC_URL: PUBLIC });
  try {
    const cases = [
      [INBOUND, inbound({ Body: 'hello' })],
      [INBOUND, inbound({ Body: 'unicode: héllo ✓ 😀 中文' })],
      [INBOUND, inbound({ Body: 'x', Tag: ['b', 'a', 'c'] })], // repeated name
      [INBOUND, inbound({ Body: 'same', Tag: ['a', 'a'] })], // repeated name and value
      [`${INBOUND}?tenant=acme&region=eu`, inbound({ Body: 'query' })],
      [`${INBOUND}?q=a%20b`, inbound({ Body: 'encoded query' })],
      [INBOUND, inbound({ Body: 'a&b=c+d%e', MediaUrl0: 'https://x/y?z=1', NumMedia: '1' })],
    ];
    await t.test('accepted', async () => {
      for (const [path, params] of cases) {
        const url = PUBLIC + path;
        const sig = twilio.getExpectedTwilioSignature(TOKEN, url, params);
        assert.ok(twilio.validateRequest(TOKEN, sig, url, params));
        const r = await post(s, path, encode(params), {
          'Content-Type': 'application/x-www-form-urlencoded', 'X-Twilio-Signature': sig,
        });
        assert.strictEqual(r.status, 200, `${path} ${JSON.stringify(params)}: ${r.text}`);
        assert.match(r.text, /<Response\/>/);
      }
    });

    await t.test('the URL with its default port', async () => {
      const params = inbound({ Body: 'port' });
      const sig = twilio.getExpectedTwilioSignature(TOKEN, `${PUBLIC}:443${INBOUND}`, params);
      const r = await post(s, INBOUND, encode(params), {
        'Content-Type': 'application/x-www-form-urlencoded', 'X-Twilio-Signature': sig,
      });
      assert.strictEqual(r.status, 200);
    });

    await t.test('altered requests are refused', async () => {
      const params = inbound({ Body: 'x', Tag: ['b', 'a'] });
      const sig = twilio.getExpectedTwilioSignature(TOKEN, PUBLIC + INBOUND, params);
      const hdr = (x) => ({ 'Content-Type': 'application/x-www-form-urlencoded', 'X-Twilio-Signature': x });
      // one value of a repeated name dropped: a validator keeping only one value would pass this
      assert.strictEqual((await post(s, INBOUND, encode({ ...params, Tag: ['b'] }), hdr(sig))).status, 403);
      assert.strictEqual((await post(s, INBOUND, encode({ ...params, Body: 'y' }), hdr(sig))).status, 403);
      assert.strictEqual((await post(s, `${INBOUND}?x=1`, encode(params), hdr(sig))).status, 403);
      const flipped = (sig[0] === 'A' ? 'B' : 'A') + sig.slice(1);
      assert.strictEqual((await post(s, INBOUND, encode(params), hdr(flipped))).status, 403);
    });

    await t.test('JSON bodies: the bodySHA256 variant', async () => {
      const body = JSON.stringify({ event: 'x' });
      const path = `${INBOUND}?bodySHA256=${twilio.getExpectedBodyHash(body)}`;
      const sig = twilio.getExpectedTwilioSignature(TOKEN, PUBLIC + path, {});
      const hdr = { 'Content-Type': 'application/json', 'X-Twilio-Signature': sig };
      // Signed right: past the signature check (these routes take forms, so 415).
      assert.strictEqual((await post(s, path, body, hdr)).status, 415);
      // A body that does not match its hash is a forgery.
      assert.strictEqual((await post(s, path, JSON.stringify({ event: 'y' }), hdr)).status, 403);
    });
  } finally {
    const code = await s.stop();
    assert.strictEqual(code, 0, s.log());
  }
});
