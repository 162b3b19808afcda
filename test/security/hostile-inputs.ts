import fc from 'fast-check';

/**
 * Generators of hostile input for the fuzz tests. Every body they make is invalid by construction (a
 * wrong-typed or operator value where a field belongs, an unknown or prototype-polluting key, a missing
 * field, malformed or oversized JSON, too deep nesting), so a service that applies one has a hole.
 */

type Json = Record<string, unknown>;

/** An own enumerable property, even for "__proto__" (JSON.stringify then writes it, as an attacker would). */
export function withKey(object: Json, key: string, value: unknown): Json {
  const copy: Json = { ...object };
  Object.defineProperty(copy, key, { value, enumerable: true, writable: true, configurable: true });
  return copy;
}

export const operatorValue = fc.constantFrom<unknown>(
  { $gt: '' },
  { $ne: null },
  { $where: 'sleep(10000) || true' },
  { $regex: '.*' },
  { $in: [] },
  { $exists: true },
  { $expr: { $eq: [1, 1] } },
  { $set: { status: 'OFFLINE' } },
  withKey({}, '__proto__', { polluted: true }),
  { constructor: { prototype: { polluted: true } } },
);

/** Invalid for every field of every schema (payload included): no string of up to 255 characters, no number in 0..1e6, no plain object. */
export const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  operatorValue,
  fc.constant(null),
  fc.boolean(),
  fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 4 }),
  // At least one key no schema has (an empty object is a valid shutdown payload).
  fc.dictionary(
    fc.string({ maxLength: 8 }).map((k) => `$${k}`),
    fc.jsonValue({ maxDepth: 2 }),
    { minKeys: 1, maxKeys: 4 },
  ),
  fc.integer({ min: 1_000_001 }),
  fc.integer({ max: -1 }),
  fc.double({ min: 1e7, noNaN: true, noDefaultInfinity: true }),
  fc.string({ minLength: 256, maxLength: 600 }),
);

export const pollutingKey = fc.constantFrom('__proto__', 'constructor', 'prototype', '$where', '$set', '$gt', 'status', 'credentialHash', '_id', 'rev');

/** A valid body made invalid by one change. `keys`: the schema's keys; `required`: which of them must be present. */
export function mutatedBody(base: fc.Arbitrary<Json>, keys: string[], required: string[]): fc.Arbitrary<Json | unknown[]> {
  const replace = fc.tuple(base, fc.constantFrom(...keys), hostileValue).map(([body, key, value]) => ({ ...body, [key]: value }));
  const extra = fc
    .tuple(
      base,
      fc.oneof(
        pollutingKey,
        fc.string({ minLength: 1, maxLength: 12 }).filter((k) => !keys.includes(k)),
      ),
      fc.oneof(hostileValue, fc.string({ maxLength: 20 })),
    )
    .map(([body, key, value]) => withKey(body, key, value));
  const wrap = fc.tuple(base, fc.constantFrom('array', '$and', 'nested')).map(([body, how]) => (how === 'array' ? [body] : how === '$and' ? { $and: [body] } : { body }));
  const options = [replace, extra, wrap];
  if (required.length) {
    options.push(
      fc.tuple(base, fc.constantFrom(...required)).map(([body, key]) => {
        const copy = { ...body };
        delete copy[key];
        return copy;
      }),
    );
  }
  return fc.oneof(...options);
}

function deepNesting(depth: number, kind: 'array' | 'object'): string {
  return kind === 'array' ? `${'['.repeat(depth)}${']'.repeat(depth)}` : `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
}

/** Raw request / message bodies: JSON text of mutated bodies, or bytes that are not a usable body at all. */
export function hostileBody(mutated: fc.Arbitrary<unknown>, valid: fc.Arbitrary<Json>): fc.Arbitrary<string | Uint8Array> {
  return fc.oneof(
    { weight: 6, arbitrary: mutated.map((body) => JSON.stringify(body)) },
    // Deeply nested: as a field of a valid body, or the whole body.
    {
      weight: 1,
      arbitrary: fc
        .tuple(valid, fc.integer({ min: 30, max: 6000 }), fc.constantFrom<'array' | 'object'>('array', 'object'), fc.boolean())
        .map(([body, depth, kind, whole]) => (whole ? deepNesting(depth, kind) : JSON.stringify(body).replace(/}$/, `,"deep":${deepNesting(depth, kind)}}`))),
    },
    // Oversized (over the 16 KiB limit).
    { weight: 1, arbitrary: fc.tuple(valid, fc.integer({ min: 16 * 1024 + 1, max: 64 * 1024 })).map(([body, size]) => JSON.stringify({ ...body, padding: 'x'.repeat(size) })) },
    // Malformed: truncated JSON, random text, random bytes, a JSON value that is not an object. Never empty:
    // an empty shutdown body is the original agent's valid request.
    {
      weight: 1,
      arbitrary: fc.tuple(valid, fc.nat()).map(([body, cut]) => {
        const text = JSON.stringify(body);
        return text.slice(0, 1 + (cut % (text.length - 2)));
      }),
    },
    { weight: 1, arbitrary: fc.string({ minLength: 1, maxLength: 200, unit: 'binary' }).filter((s) => s.trim() !== '' && !/^\s*\{/.test(s)) },
    { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 300 }).filter((b) => b[0] !== 0x7b) },
    { weight: 1, arbitrary: fc.constantFrom('[]', '"text"', '42', 'null', 'true', '{}garbage', '{"a":1,}', "{'a':1}", '{"a":NaN}', '\u0000') },
  );
}
