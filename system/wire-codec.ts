/**
 * msgpack for messages on the wire (fills on JetStream), apart from the
 * journal's codec (persistence/codec.ts): the wire and the journal are two
 * formats with two lifecycles, and either may change without the other.
 * Wire messages carry their own version field (`v`), so there is no envelope.
 */
import { C1, Packr } from 'msgpackr';

// Options passed explicitly: plain maps as objects, no records (a consumer in
// another language must read a message on its own), int64 as bigint (a
// quantity or price never passes through a float).
const packr = new Packr({
  useRecords: false,
  mapsAsObjects: true,
  int64AsType: 'bigint',
  useBigIntExtension: true,
  moreTypes: false,
  bundleStrings: false,
});

export function packWire(value: unknown): Buffer {
  return packr.pack(value);
}

/** Throws on bytes that are not msgpack, including the reserved byte 0xc1. */
export function unpackWire(bytes: Uint8Array): unknown {
  const value: unknown = packr.unpack(bytes);
  if (value === C1) throw new Error('0xc1 is a reserved msgpack byte');
  return value;
}
