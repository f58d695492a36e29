/**
 * Binary codec for journal events, snapshots and messages: msgpack with a
 * schema version in every envelope. bigint stays bigint (int64 on the wire).
 * Decoding an unknown version fails loudly: silently misreading money is worse
 * than stopping.
 */
import { C1, Packr } from 'msgpackr';
import { BlockfillError, ErrorCode } from '../actors/errors.ts';

export const SCHEMA_VERSION = 1;
const SUPPORTED_VERSIONS: ReadonlySet<number> = new Set([1]);

// Options passed explicitly: plain maps as objects, no record extension
// (records make old bytes depend on the structures of a later process),
// 64-bit integers decode as bigint.
const packr = new Packr({
  useRecords: false,
  mapsAsObjects: true,
  int64AsType: 'bigint',
  // Beyond 64 bits a bigint is written as an extension instead of throwing:
  // encoding must never fail half-way through a batch of events.
  useBigIntExtension: true,
  moreTypes: false,
  bundleStrings: false,
});

export class SchemaVersionError extends BlockfillError {
  constructor(version: unknown, what: string) {
    super(
      ErrorCode.SchemaVersionUnknown,
      `${what} has schema version ${String(version)}; this build reads ${[...SUPPORTED_VERSIONS].join(', ')}`,
    );
    this.name = 'SchemaVersionError';
  }
}

export class DecodeError extends BlockfillError {
  constructor(what: string, cause: unknown) {
    super(ErrorCode.DecodeFailed, `${what} is not valid msgpack`, { cause });
    this.name = 'DecodeError';
  }
}

interface Envelope {
  v: number;
  d: unknown;
}

export function encodeVersioned(data: unknown): Buffer {
  const envelope: Envelope = { v: SCHEMA_VERSION, d: data };
  return packr.pack(envelope);
}

export function decodeVersioned(bytes: Uint8Array, what: string): unknown {
  let envelope: unknown;
  try {
    envelope = packr.unpack(bytes);
  } catch (error) {
    throw new DecodeError(what, error);
  }
  if (envelope === C1 || envelope instanceof Uint8Array) {
    // The reserved byte 0xc1 or bare binary: garbage, not a version question.
    throw new DecodeError(what, new Error('not a msgpack envelope'));
  }
  if (typeof envelope !== 'object' || envelope === null)
    throw new SchemaVersionError(undefined, what);
  if (!('v' in envelope) || !('d' in envelope)) throw new SchemaVersionError(undefined, what);
  const { v, d } = envelope as Envelope;
  if (!SUPPORTED_VERSIONS.has(v)) throw new SchemaVersionError(v, what);
  return d;
}

/** Plain msgpack without an envelope: raw bytes for tests of the envelope itself. */
export function packPlain(value: unknown): Buffer {
  return packr.pack(value);
}
