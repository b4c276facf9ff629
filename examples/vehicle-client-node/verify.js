// Verification of roadstream's signed vehicle.control commands, as docs/vehicle-client.md
// states it. Pure: no Kafka here, the clock is passed in. Node's own crypto only.
import { createHmac, timingSafeEqual } from 'node:crypto';

export const HEADERS = Object.freeze({
  keyId: 'sig-key-id', epoch: 'sig-epoch', counter: 'sig-counter', mac: 'sig-mac',
});
export const DOMAIN = 'roadstream-control-v2\n';
export const INT64_MAX = (1n << 63n) - 1n;
export const MIN_KEY_BYTES = 32;
// The vehicle's envelope: the gate's command limits times 1.25 (docs/vehicle-client.md).
export const DEFAULT_BOUNDS = Object.freeze({
  max_speed_mps: 50.0,
  max_accel_mps2: 3.75,
  max_decel_mps2: 7.5,
  max_jerk_mps3: 12.5,
  max_steer_rad: 0.75,
  max_steer_rate_radps: 1.0,
});
export const DEFAULT_MAX_WINDOW_NS = 1_000_000_000n;

// Header bytes are matched as latin1 text: one character per byte, so [0-9] means the
// ASCII digits and nothing else (no other script's digits, no sign, no space).
const CANONICAL_DECIMAL = /^(?:0|[1-9][0-9]{0,18})$/;
const KEY_ID = /^[A-Za-z0-9._-]{1,64}$/;
const MAC_HEX = /^[0-9a-f]{64}$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const MODES = new Set(['normal', 'comfortable_stop', 'emergency_stop']);
const CLOCKS = new Set(['wall', 'source']);

/** A command the vehicle must not act on; `reason` is one of the documented codes. */
export class Rejected extends Error {
  constructor(reason, message) {
    super(message);
    this.reason = reason;
  }
}

/** The keyring from its JSON text {key_id: standard base64 key}; throws naming the bad entry. */
export function parseKeyring(text) {
  let data;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new Error(`keyring is not JSON: ${err.message}`);
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)
      || Object.keys(data).length === 0) {
    throw new Error('keyring must be a non-empty JSON object {key_id: base64 key}');
  }
  const keyring = new Map();
  for (const [keyId, encoded] of Object.entries(data)) {
    if (!KEY_ID.test(keyId)) throw new Error(`key id ${JSON.stringify(keyId)} is not valid`);
    if (typeof encoded !== 'string' || !BASE64.test(encoded)) {
      throw new Error(`key ${JSON.stringify(keyId)} is not standard padded base64`);
    }
    const key = Buffer.from(encoded, 'base64');
    if (key.length < MIN_KEY_BYTES) {
      throw new Error(`key ${JSON.stringify(keyId)} has ${key.length} bytes, needs ${MIN_KEY_BYTES}`);
    }
    keyring.set(keyId, key);
  }
  return keyring;
}

/** The exact bytes the MAC covers. */
export function macInput(keyId, epoch, counter, value) {
  return Buffer.concat([Buffer.from(`${DOMAIN}${keyId}\n${epoch}\n${counter}\n`, 'latin1'), value]);
}

/** Lowercase hex HMAC-SHA256 of one command. */
export function computeMac(key, keyId, epoch, counter, value) {
  return createHmac('sha256', key).update(macInput(keyId, epoch, counter, value)).digest('hex');
}

/**
 * JSON.parse that keeps integers exact: integer literals become BigInt (stamps in ns do not
 * fit a double), other numbers Number. Objects have no prototype (no "__proto__" tricks).
 */
export function parseJson(text) {
  let i = 0;
  const fail = (what) => { throw new SyntaxError(`${what} at character ${i}`); };
  const space = () => { while (i < text.length && ' \t\n\r'.includes(text[i])) i += 1; };
  const sticky = (re) => {
    re.lastIndex = i;
    const m = re.exec(text);
    if (m) i = re.lastIndex;
    return m;
  };
  const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
  const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
  const LITERAL = /true|false|null/y;
  const LITERALS = { true: true, false: false, null: null };
  function value() {
    space();
    if (text[i] === '{') {
      i += 1;
      const obj = Object.create(null);
      space();
      if (text[i] === '}') { i += 1; return obj; }
      for (;;) {
        space();
        const key = sticky(STRING);
        if (!key) fail('expected a string key');
        space();
        if (text[i] !== ':') fail("expected ':'");
        i += 1;
        obj[JSON.parse(key[0])] = value();
        space();
        if (text[i] === ',') { i += 1; continue; }
        if (text[i] === '}') { i += 1; return obj; }
        fail("expected ',' or '}'");
      }
    }
    if (text[i] === '[') {
      i += 1;
      const arr = [];
      space();
      if (text[i] === ']') { i += 1; return arr; }
      for (;;) {
        arr.push(value());
        space();
        if (text[i] === ',') { i += 1; continue; }
        if (text[i] === ']') { i += 1; return arr; }
        fail("expected ',' or ']'");
      }
    }
    const str = sticky(STRING);
    if (str) return JSON.parse(str[0]);
    const num = sticky(NUMBER);
    if (num) return num[1] === undefined && num[2] === undefined ? BigInt(num[0]) : Number(num[0]);
    const lit = sticky(LITERAL);
    if (lit) return LITERALS[lit[0]];
    return fail('unexpected input');
  }
  const result = value();
  space();
  if (i !== text.length) fail('trailing data');
  return result;
}

function malformed(message) {
  return new Rejected('malformed', `not a vehicle.control command: ${message}`);
}

function uint64Field(obj, name) {
  const v = obj[name];
  if (typeof v !== 'bigint' || v < 0n || v > INT64_MAX) throw malformed(`${name} must be an integer 0..2^63-1`);
  return v;
}

function floatField(obj, name, fallback) {
  const v = obj[name];
  if (v === undefined && fallback !== undefined) return fallback;
  const n = typeof v === 'bigint' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isFinite(n)) throw malformed(`${name} must be a finite number`);
  return n;
}

/** The command fields a vehicle checks, from the value bytes (the JSON Schema's rules). */
export function decodeCommand(value) {
  let obj;
  try {
    obj = parseJson(new TextDecoder('utf-8', { fatal: true }).decode(value));
  } catch (err) {
    throw malformed(err.message);
  }
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) throw malformed('not a JSON object');
  const vehicleId = obj.vehicle_id;
  if (typeof vehicleId !== 'string' || vehicleId.length < 1 || vehicleId.length > 128) {
    throw malformed('vehicle_id must be a string of 1-128 characters');
  }
  const mode = obj.mode === undefined ? 'normal' : obj.mode;
  const clock = obj.clock === undefined ? 'wall' : obj.clock;
  if (!MODES.has(mode)) throw malformed(`unknown mode ${JSON.stringify(mode)}`);
  if (!CLOCKS.has(clock)) throw malformed(`unknown clock ${JSON.stringify(clock)}`);
  const command = {
    vehicle_id: vehicleId,
    stamp_ns: uint64Field(obj, 'stamp_ns'),
    seq: uint64Field(obj, 'seq'),
    valid_until_ns: uint64Field(obj, 'valid_until_ns'),
    steering_tire_angle_rad: floatField(obj, 'steering_tire_angle_rad'),
    steering_tire_rotation_rate_radps: floatField(obj, 'steering_tire_rotation_rate_radps', 0),
    target_speed_mps: floatField(obj, 'target_speed_mps'),
    accel_mps2: floatField(obj, 'accel_mps2'),
    jerk_mps3: floatField(obj, 'jerk_mps3', 0),
    mode,
    clock,
  };
  if (command.target_speed_mps < 0) throw malformed('target_speed_mps must be >= 0');
  return command;
}

function boundViolations(command, bounds) {
  const checks = [
    ['target_speed_mps', 0, bounds.max_speed_mps],
    ['accel_mps2', -bounds.max_decel_mps2, bounds.max_accel_mps2],
    ['jerk_mps3', -bounds.max_jerk_mps3, bounds.max_jerk_mps3],
    ['steering_tire_angle_rad', -bounds.max_steer_rad, bounds.max_steer_rad],
    ['steering_tire_rotation_rate_radps', -bounds.max_steer_rate_radps, bounds.max_steer_rate_radps],
  ];
  return checks.filter(([name, lo, hi]) => !(command[name] >= lo && command[name] <= hi))
    .map(([name, lo, hi]) => `${name}=${command[name]} outside [${lo}, ${hi}]`);
}

function signatureHeaders(headers) {
  const found = new Map(Object.values(HEADERS).map((name) => [name, []]));
  for (const [name, raw] of headers) {
    if (found.has(name)) found.get(name).push(raw ?? Buffer.alloc(0));
  }
  for (const [name, values] of found) {
    if (values.length === 0) throw new Rejected('missing_header', `unsigned command: header '${name}' is missing`);
  }
  for (const [name, values] of found) {
    if (values.length > 1) throw new Rejected('malformed_header', `header '${name}' appears ${values.length} times`);
  }
  const text = (name) => Buffer.from(found.get(name)[0]).toString('latin1');
  return { keyId: text(HEADERS.keyId), epoch: text(HEADERS.epoch), counter: text(HEADERS.counter), mac: text(HEADERS.mac) };
}

function canonicalDecimal(name, text) {
  if (!CANONICAL_DECIMAL.test(text) || BigInt(text) > INT64_MAX) {
    throw new Rejected('malformed_header', `header '${name}' = ${JSON.stringify(text)} is not a canonical decimal`);
  }
  return BigInt(text);
}

/** One vehicle's verifier: its keyring, its id, its policy and the last accepted freshness. */
export class CommandVerifier {
  constructor({ keyring, vehicleId, bounds = DEFAULT_BOUNDS, maxWindowNs = DEFAULT_MAX_WINDOW_NS,
                requireWallClock = false, lastAccepted = null }) {
    this.keyring = keyring;
    this.vehicleId = vehicleId;
    this.bounds = bounds;
    this.maxWindowNs = maxWindowNs;
    this.requireWallClock = requireWallClock;
    this.lastAccepted = lastAccepted; // {epoch: BigInt, counter: BigInt} or null
  }

  /**
   * Return the command if it may be acted on, else throw Rejected. `headers` is a list of
   * [name, Buffer]; `value` the exact value bytes; `nowNs` (BigInt) the time on `nowClock`.
   */
  check(headers, value, nowNs, nowClock = 'wall') {
    const sig = signatureHeaders(headers);
    if (!KEY_ID.test(sig.keyId)) throw new Rejected('malformed_header', `header '${HEADERS.keyId}' is not a key id`);
    const epoch = canonicalDecimal(HEADERS.epoch, sig.epoch);
    const counter = canonicalDecimal(HEADERS.counter, sig.counter);
    if (!MAC_HEX.test(sig.mac)) throw new Rejected('malformed_header', `header '${HEADERS.mac}' is not 64 lowercase hex digits`);
    const key = this.keyring.get(sig.keyId);
    if (key === undefined) throw new Rejected('unknown_key', `unknown key id '${sig.keyId}'`);
    const expected = Buffer.from(computeMac(key, sig.keyId, sig.epoch, sig.counter, value), 'latin1');
    if (!timingSafeEqual(expected, Buffer.from(sig.mac, 'latin1'))) {
      throw new Rejected('bad_mac', `MAC mismatch for key '${sig.keyId}', epoch ${epoch}, counter ${counter}`);
    }
    const command = decodeCommand(value);
    if (command.vehicle_id !== this.vehicleId) {
      throw new Rejected('wrong_vehicle', `command for vehicle '${command.vehicle_id}', this is '${this.vehicleId}'`);
    }
    const last = this.lastAccepted;
    if (last !== null && (epoch < last.epoch || (epoch === last.epoch && counter <= last.counter))) {
      throw new Rejected('replayed', `(epoch, counter) (${epoch}, ${counter}) is not after the last accepted (${last.epoch}, ${last.counter})`);
    }
    if (this.requireWallClock && command.clock !== 'wall') {
      throw new Rejected('clock', `command on the ${command.clock} clock; this vehicle requires the wall clock`);
    }
    const windowNs = command.valid_until_ns - command.stamp_ns;
    if (windowNs < 0n || windowNs > this.maxWindowNs) {
      throw new Rejected('validity_window', `valid_until - stamp = ${windowNs} ns, outside [0, ${this.maxWindowNs}]`);
    }
    if (command.clock === nowClock && nowNs > command.valid_until_ns) {
      throw new Rejected('expired', `command seq ${command.seq} expired ${nowNs - command.valid_until_ns} ns ago`);
    }
    const violations = boundViolations(command, this.bounds);
    if (violations.length > 0) throw new Rejected('out_of_bounds', violations.join('; '));
    this.lastAccepted = { epoch, counter };
    return { command, epoch, counter, keyId: sig.keyId };
  }
}
