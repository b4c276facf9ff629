#!/usr/bin/env node
// A vehicle's client of roadstream's vehicle.control topic (kafkajs): joins a consumer group,
// verifies every command of its vehicle by docs/vehicle-client.md and prints one JSON line
// per command: accepted, or rejected with the reason.
//
//   ROADSTREAM_CONTROL_KEYS='{"k1": "<base64 key>"}' \
//     node client.js --brokers 127.0.0.1:9092 --vehicle ego
//   node client.js --vectors ../../docs/control-test-vectors.json
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import {
  CommandVerifier, DEFAULT_BOUNDS, DEFAULT_MAX_WINDOW_NS, Rejected, parseJson, parseKeyring,
} from './verify.js';

const USAGE = `usage:
  node client.js --brokers HOST:PORT[,HOST:PORT] --vehicle ID [--group ID] [--keys-file FILE]
                 [--max-messages N] [--timeout-s S] [--from-beginning] [--max-wait-ms MS]
                 [--max-window-ms MS] [--require-wall-clock]
  node client.js --vectors FILE
The keyring is ROADSTREAM_CONTROL_KEYS (JSON {key_id: base64 key}) or --keys-file.`;

const OPTIONS = {
  brokers: { type: 'string' },
  vehicle: { type: 'string' },
  group: { type: 'string' },
  'keys-file': { type: 'string' },
  'max-messages': { type: 'string' },
  'timeout-s': { type: 'string' },
  'from-beginning': { type: 'boolean', default: false },
  'max-wait-ms': { type: 'string', default: '20' },
  'max-window-ms': { type: 'string', default: String(DEFAULT_MAX_WINDOW_NS / 1_000_000n) },
  'require-wall-clock': { type: 'boolean', default: false },
  vectors: { type: 'string' },
  help: { type: 'boolean', default: false },
};

const say = (obj) => process.stdout.write(`${JSON.stringify(obj, (_, v) => (typeof v === 'bigint' ? v.toString() : v))}\n`);

function positiveInt(name, text) {
  if (!/^[1-9][0-9]*$/.test(text)) throw new Error(`--${name} must be a positive integer, got ${JSON.stringify(text)}`);
  return Number(text);
}

/** Check every case of a vector file; return the number of mismatches. */
function checkVectors(path) {
  const file = parseJson(readFileSync(path, 'utf8'));
  const keyring = parseKeyring(JSON.stringify(file.keyring));
  const bounds = Object.fromEntries(Object.entries(file.bounds).map(([k, v]) => [k, Number(v)]));
  let mismatches = 0;
  for (const [name, value] of Object.entries(DEFAULT_BOUNDS)) {
    if (bounds[name] !== value) {
      say({ vector: 'defaults', ok: false, error: `built-in ${name}=${value}, the vectors say ${bounds[name]}` });
      mismatches += 1;
    }
  }
  const maxWindowNs = BigInt(Math.round(Number(file.max_window_ms) * 1e6));
  if (maxWindowNs !== DEFAULT_MAX_WINDOW_NS) {
    say({ vector: 'defaults', ok: false, error: `built-in max window ${DEFAULT_MAX_WINDOW_NS} ns, the vectors say ${maxWindowNs}` });
    mismatches += 1;
  }
  for (const c of file.cases) {
    const last = c.last_accepted === null ? null
      : { epoch: BigInt(c.last_accepted.epoch), counter: BigInt(c.last_accepted.counter) };
    const verifier = new CommandVerifier({
      keyring, vehicleId: file.vehicle_id, bounds, maxWindowNs,
      requireWallClock: c.require_wall_clock, lastAccepted: last,
    });
    const headers = c.headers.map(([k, v]) => [k, Buffer.from(v, 'utf8')]);
    let got;
    let error = '';
    try {
      verifier.check(headers, Buffer.from(c.value, 'utf8'), BigInt(file.now_ns), file.now_clock);
      got = 'accept';
    } catch (err) {
      if (!(err instanceof Rejected)) throw err;
      got = err.reason;
      error = err.message;
    }
    const ok = got === c.expect;
    if (!ok) mismatches += 1;
    say({ vector: c.name, ok, expect: c.expect, got, ...(error && { error }) });
  }
  say({ vectors: file.cases.length, mismatches });
  return mismatches;
}

function readKeyring(keysFile) {
  const text = keysFile ? readFileSync(keysFile, 'utf8') : process.env.ROADSTREAM_CONTROL_KEYS;
  if (!text) throw new Error('no keyring: set ROADSTREAM_CONTROL_KEYS or pass --keys-file');
  return parseKeyring(text);
}

async function consume(args) {
  if (!args.brokers || !args.vehicle) throw new Error(`--brokers and --vehicle are required\n${USAGE}`);
  const keyring = readKeyring(args['keys-file']);
  const maxMessages = args['max-messages'] ? positiveInt('max-messages', args['max-messages']) : Infinity;
  const timeoutS = args['timeout-s'] ? positiveInt('timeout-s', args['timeout-s']) : null;
  const verifier = new CommandVerifier({
    keyring, vehicleId: args.vehicle,
    maxWindowNs: BigInt(positiveInt('max-window-ms', args['max-window-ms'])) * 1_000_000n,
    requireWallClock: args['require-wall-clock'],
  });
  // kafkajs is needed only here, so --vectors runs without node_modules.
  const { Kafka, logLevel } = await import('kafkajs');
  const kafka = new Kafka({
    clientId: `vehicle-${args.vehicle}`,
    brokers: args.brokers.split(','),
    logLevel: logLevel.ERROR,
    logCreator: () => ({ namespace, log }) => process.stderr.write(`${namespace}: ${log.message}\n`),
  });
  const consumer = kafka.consumer({
    groupId: args.group ?? `vehicle-${args.vehicle}`,
    // The embedded broker answers a waiting fetch only when the wait runs out: keep it short,
    // or commands arrive after their validity (200 ms).
    maxWaitTimeInMs: positiveInt('max-wait-ms', args['max-wait-ms']),
    // A new group's first join waits about this long on the embedded broker.
    rebalanceTimeout: 3000,
    sessionTimeout: 10000,
    heartbeatInterval: 1000,
  });
  const counts = { accepted: 0, rejected: {}, skipped: 0 };
  let processed = 0;
  let finish;
  const finished = new Promise((resolve) => { finish = resolve; });
  consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => say({ event: 'ready', assignment: payload.memberAssignment }));
  consumer.on(consumer.events.CRASH, ({ payload }) => finish({ error: `consumer crashed: ${payload.error.message}` }));
  await consumer.connect();
  await consumer.subscribe({ topic: 'vehicle.control', fromBeginning: args['from-beginning'] });
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      if (processed >= maxMessages) return;
      // The Kafka key only routes; the verifier binds the command to its vehicle_id.
      if (message.key !== null && message.key.toString('latin1') !== args.vehicle) {
        counts.skipped += 1;
        return;
      }
      processed += 1;
      const headers = Object.entries(message.headers ?? {}).flatMap(
        ([k, v]) => (Array.isArray(v) ? v.map((x) => [k, x]) : [[k, v]]));
      const nowNs = BigInt(Date.now()) * 1_000_000n;
      const where = { partition, offset: message.offset };
      try {
        const { command, epoch, counter, keyId } = verifier.check(headers, message.value ?? Buffer.alloc(0), nowNs);
        counts.accepted += 1;
        say({ result: 'accepted', ...where, key_id: keyId, epoch, counter, seq: command.seq, mode: command.mode });
      } catch (err) {
        if (!(err instanceof Rejected)) throw err;
        counts.rejected[err.reason] = (counts.rejected[err.reason] ?? 0) + 1;
        say({ result: 'rejected', ...where, reason: err.reason, error: err.message });
      }
      if (processed >= maxMessages) finish({});
    },
  });
  const stop = () => finish({ error: 'interrupted' });
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const timer = timeoutS === null ? null
    : setTimeout(() => finish({ error: `timed out after ${timeoutS} s with ${processed} of ${maxMessages} messages` }), timeoutS * 1000);
  const outcome = await finished;
  if (timer !== null) clearTimeout(timer);
  await consumer.disconnect();
  say({ event: 'done', ...counts, ...outcome });
  return outcome.error && outcome.error !== 'interrupted' ? 2 : 0;
}

async function main() {
  let args;
  try {
    ({ values: args } = parseArgs({ options: OPTIONS, strict: true }));
  } catch (err) {
    process.stderr.write(`${err.message}\n${USAGE}\n`);
    return 64;
  }
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  try {
    if (args.vectors) return checkVectors(args.vectors) === 0 ? 0 : 1;
    return await consume(args);
  } catch (err) {
    process.stderr.write(`vehicle-client: ${err.message}\n`);
    return 2;
  }
}

const code = await main();
process.stdout.write("", () => process.exit(code));
