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

/**
 * The header of the msgpack value at `pos`: where its payload ends (for a
 * scalar) and how many values it contains (for an array or map). Only called
 * on bytes that already decoded, so they are well formed.
 */
function headerAt(b: Uint8Array, pos: number): { next: number; children: number } {
  const t = b[pos] ?? 0xc1;
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const u8 = () => b[pos + 1] ?? 0;
  const u16 = () => view.getUint16(pos + 1);
  const u32 = () => view.getUint32(pos + 1);
  if (t <= 0x7f || t >= 0xe0) return { next: pos + 1, children: 0 };
  if (t <= 0x8f) return { next: pos + 1, children: 2 * (t & 0x0f) };
  if (t <= 0x9f) return { next: pos + 1, children: t & 0x0f };
  if (t <= 0xbf) return { next: pos + 1 + (t & 0x1f), children: 0 };
  const fixed: Record<number, number> = {
    0xc0: 1,
    0xc2: 1,
    0xc3: 1,
    0xca: 5,
    0xcb: 9,
    0xcc: 2,
    0xcd: 3,
    0xce: 5,
    0xcf: 9,
    0xd0: 2,
    0xd1: 3,
    0xd2: 5,
    0xd3: 9,
    0xd4: 3,
    0xd5: 4,
    0xd6: 6,
    0xd7: 10,
    0xd8: 18,
  };
  const size = fixed[t];
  if (size !== undefined) return { next: pos + size, children: 0 };
  switch (t) {
    case 0xc4:
    case 0xd9:
      return { next: pos + 2 + u8(), children: 0 };
    case 0xc5:
    case 0xda:
      return { next: pos + 3 + u16(), children: 0 };
    case 0xc6:
    case 0xdb:
      return { next: pos + 5 + u32(), children: 0 };
    case 0xc7:
      return { next: pos + 3 + u8(), children: 0 };
    case 0xc8:
      return { next: pos + 4 + u16(), children: 0 };
    case 0xc9:
      return { next: pos + 6 + u32(), children: 0 };
    case 0xdc:
      return { next: pos + 3, children: u16() };
    case 0xdd:
      return { next: pos + 5, children: u32() };
    case 0xde:
      return { next: pos + 3, children: 2 * u16() };
    case 0xdf:
      return { next: pos + 5, children: 2 * u32() };
    default:
      throw new Error(`byte 0x${t.toString(16)} at ${pos} starts no msgpack value`);
  }
}

/** Skips the whole value at `pos` (nested ones included), iteratively: no recursion depth to exhaust. */
function skipValue(b: Uint8Array, pos: number): number {
  let at = pos;
  let remaining = 1;
  while (remaining > 0) {
    if (at >= b.length) throw new Error('msgpack value runs past the end');
    const h = headerAt(b, at);
    at = h.next;
    remaining += h.children - 1;
  }
  return at;
}

const isFloatByte = (byte: number | undefined) => byte === 0xca || byte === 0xcb;

/**
 * The string keys of a top-level msgpack map whose values are encoded as
 * floats (0xca, 0xcb). A decoder turns 67.0 into the number 67, so only the
 * bytes tell that the producer sent a float.
 */
export function floatKeys(bytes: Uint8Array): string[] {
  if (bytes.length === 0) return [];
  const top = headerAt(bytes, 0);
  const first = bytes[0] ?? 0;
  const isMap = (first >= 0x80 && first <= 0x8f) || first === 0xde || first === 0xdf;
  if (!isMap) return [];
  const keys: string[] = [];
  let at = top.next;
  for (let pair = 0; pair < top.children / 2; pair++) {
    const keyStart = at;
    const keyHeader = headerAt(bytes, at);
    at = skipValue(bytes, at);
    const valueByte = bytes[at];
    if (isFloatByte(valueByte) && keyHeader.children === 0) {
      const key = unpackWire(bytes.subarray(keyStart, at));
      if (typeof key === 'string') keys.push(key);
    }
    at = skipValue(bytes, at);
  }
  return keys;
}
