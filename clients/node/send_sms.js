#!/usr/bin/env node
// Send an SMS through commsgate from Node, with @grpc/grpc-js and
// @grpc/proto-loader reading commsgate's .proto directly:
//   npm ci && node send_sms.js 127.0.0.1:50051 +14155550100 "Hello"
'use strict';
const path = require('node:path');
const crypto = require('node:crypto');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_DIR = process.env.COMMSGATE_PROTO_DIR || path.join(__dirname, '..', '..', 'proto');

function main() {
  const [target, to, body] = process.argv.slice(2);
  if (!body) {
    console.error('usage: send_sms.js HOST:PORT TO BODY');
    process.exit(2);
  }
  const def = protoLoader.loadSync('commsgate/v1/messaging.proto', {
    keepCase: true, enums: String, defaults: true, includeDirs: [PROTO_DIR],
  });
  const { MessagingService } = grpc.loadPackageDefinition(def).commsgate.v1;
  const client = new MessagingService(target, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  md.set('commsgate-caller', 'node-example');
  // An idempotency key makes a retry of this call safe.
  const req = { to, body, idempotency_key: crypto.randomUUID() };
  client.SendSMS(req, md, { deadline: Date.now() + 10000 }, (err, res) => {
    client.close();
    if (err) {
      const twilio = err.metadata && err.metadata.get('twilio-error-code')[0];
      console.error(`refused: ${grpc.status[err.code]}: ${err.details}${twilio ? ` (Twilio ${twilio})` : ''}`);
      process.exit(1);
    }
    console.log(`sent ${res.sid} (${res.status}, ${res.segments} segment(s))`);
  });
}

main();
