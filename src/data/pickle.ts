/**
 * A restricted unpickler (protocols 2 to 5) for the predecessor's `metadata` entry. It builds only plain data:
 * dicts, lists, tuples (as arrays), str, bytes, int, float, bool, None, and NumPy scalars and arrays of numbers or of
 * such objects, as NumPy 1.x (`numpy.core.*`) and 2.x (`numpy._core.*`) pickle them. Every other global is refused
 * by name and nothing is ever called: the allowed globals are recognised by name and interpreted here.
 *
 * Resources are bounded by the input: time is linear in its length (integers are converted in linear time and
 * limited to MAX_INTEGER_BYTES), arrays must hold exactly the elements their shape declares, and the plain data
 * built may expand (through shared references, a "billion laughs" pickle) to at most MAX_EXPANDED_BYTES.
 */
import { invalidInput } from '../errors.js';

export type PickleValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PickleValue[]
  | { [key: string]: PickleValue };

class Global {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
  get fullName(): string {
    return `${this.module}.${this.name}`;
  }
}

/** A NumPy dtype, as far as plain numbers need it. */
class Dtype {
  endian: string;
  constructor(
    readonly kind: string, // 'f' | 'i' | 'u' | 'b' | 'O' | 'U' | 'c' ...
    readonly size: number,
  ) {
    this.endian = size === 1 || kind === 'O' ? '|' : '<';
  }
  get itemSize(): number {
    return this.kind === 'U' ? this.size * 4 : this.size;
  }
}

class NdArray {
  shape: number[] = [];
  dtype?: Dtype;
  elements: PickleValue[] = [];
}

const RECONSTRUCT = new Set(['numpy.core.multiarray._reconstruct', 'numpy._core.multiarray._reconstruct']);
const SCALAR = new Set(['numpy.core.multiarray.scalar', 'numpy._core.multiarray.scalar']);
const FROMBUFFER = new Set(['numpy.core.numeric._frombuffer', 'numpy._core.numeric._frombuffer']);
const ALLOWED = new Set([
  ...RECONSTRUCT,
  ...SCALAR,
  ...FROMBUFFER,
  'numpy.ndarray',
  'numpy.dtype',
  '_codecs.encode',
  'collections.OrderedDict',
]);

/** Longer integers than any metadata holds (8192 bits) are refused rather than converted. */
export const MAX_INTEGER_BYTES = 1024;
/**
 * The most the plain data may weigh once every shared reference is written out (as JSON.stringify and the
 * readers of metadata do): values count 8 bytes, strings and bytes their length.
 */
export const MAX_EXPANDED_BYTES = 64 << 20;

const MARK = Symbol('mark');
type StackItem = PickleValue | Global | Dtype | NdArray | typeof MARK | Map<unknown, unknown>;

/**
 * Unpickles `bytes`. `label` names the thing in errors, e.g. "metadata in case.npz"; a refused global reads
 * "metadata in case.npz refers to os.system, which is not allowed".
 */
export function unpickle(bytes: Uint8Array, label: string): PickleValue {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const stack: StackItem[] = [];
  const marks: number[] = [];
  const memo = new Map<number, StackItem>();
  let at = 0;
  const fail = (what: string): never => {
    throw invalidInput(`${label} is not a readable pickle: ${what}`);
  };
  const need = (n: number) => {
    if (at + n > bytes.length) fail(`expected ${n} more bytes at byte ${at}, found the end of the data`);
  };
  const u8 = () => (need(1), bytes[at++]!);
  const u16 = () => (need(2), (at += 2), view.getUint16(at - 2, true));
  const u32 = () => (need(4), (at += 4), view.getUint32(at - 4, true));
  const u64 = () => (need(8), (at += 8), Number(view.getBigUint64(at - 8, true)));
  const take = (n: number) => (need(n), (at += n), bytes.subarray(at - n, at));
  const line = () => {
    const end = bytes.indexOf(0x0a, at);
    if (end < 0) fail('expected a newline-terminated argument, found the end of the data');
    const text = new TextDecoder('latin1').decode(bytes.subarray(at, end));
    at = end + 1;
    return text;
  };
  const pop = (): StackItem => (stack.length === 0 ? fail('the stack is empty') : stack.pop()!);
  const top = (): StackItem => (stack.length === 0 ? fail('the stack is empty') : stack[stack.length - 1]!);
  const popMark = (): StackItem[] => {
    const mark = marks.pop();
    if (mark === undefined) fail('expected a MARK, found none');
    return stack.splice(mark!);
  };
  const utf8Decoder = new TextDecoder('utf-8', { fatal: true });
  const utf8 = (data: Uint8Array) => {
    try {
      return utf8Decoder.decode(data);
    } catch {
      // Python writes lone surrogates with 'surrogatepass': such a str is not text any reader can use.
      return fail(`a string at byte ${at - data.length} is not valid UTF-8 text`);
    }
  };
  const integerText = (text: string) => {
    if (text.length > MAX_INTEGER_BYTES * 3) fail(`an integer of ${text.length} digits is longer than the ${MAX_INTEGER_BYTES * 3} digits read`);
    if (!/^[+-]?\d+$/.test(text)) fail(`expected an integer, found '${text.slice(0, 20)}'`);
    const value = BigInt(text);
    return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
  };
  const long = (length: number) => {
    if (length > MAX_INTEGER_BYTES) fail(`an integer of ${length} bytes is longer than the ${MAX_INTEGER_BYTES} bytes read`);
    return littleEndianSigned(take(length));
  };
  const global = (module: string, name: string) => {
    const found = new Global(module, name);
    if (!ALLOWED.has(found.fullName)) {
      throw invalidInput(`${label} refers to ${found.fullName}, which is not allowed (only plain data and NumPy numbers and arrays are read from pickles)`);
    }
    return found;
  };

  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        u8();
        break;
      case 0x95: // FRAME
        u64();
        break;
      case 0x2e: // STOP
        return toPlain(pop(), label);
      case 0x28: // MARK
        marks.push(stack.length);
        break;
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push([]);
        break;
      case 0x74: // TUPLE
      case 0x6c: // LIST
        stack.push(popMark() as PickleValue[]);
        break;
      case 0x64: { // DICT
        const items = popMark();
        const dict = new Map();
        for (let i = 0; i + 1 < items.length; i += 2) dict.set(items[i], items[i + 1]);
        stack.push(dict);
        break;
      }
      case 0x85: // TUPLE1
        stack.push([pop()] as PickleValue[]);
        break;
      case 0x86: { // TUPLE2
        const b = pop();
        stack.push([pop(), b] as PickleValue[]);
        break;
      }
      case 0x87: { // TUPLE3
        const c = pop();
        const b = pop();
        stack.push([pop(), b, c] as PickleValue[]);
        break;
      }
      case 0x73: { // SETITEM
        const value = pop();
        const key = pop();
        const dict = top();
        if (!(dict instanceof Map)) fail('SETITEM on something that is not a dict');
        (dict as Map<unknown, unknown>).set(key, value);
        break;
      }
      case 0x75: { // SETITEMS
        const items = popMark();
        const dict = top();
        if (!(dict instanceof Map)) fail('SETITEMS on something that is not a dict');
        for (let i = 0; i + 1 < items.length; i += 2) (dict as Map<unknown, unknown>).set(items[i], items[i + 1]);
        break;
      }
      case 0x61: { // APPEND
        const value = pop();
        const list = top();
        if (!Array.isArray(list)) fail('APPEND on something that is not a list');
        (list as StackItem[]).push(value);
        break;
      }
      case 0x65: { // APPENDS
        const items = popMark();
        const list = top();
        if (!Array.isArray(list)) fail('APPENDS on something that is not a list');
        // One at a time: spreading a long list into push() would overflow the call stack.
        for (const item of items) (list as StackItem[]).push(item);
        break;
      }
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4a: // BININT
        need(4);
        stack.push(view.getInt32(at, true));
        at += 4;
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x8a: // LONG1
        stack.push(long(u8()));
        break;
      case 0x8b: // LONG4
        stack.push(long(u32()));
        break;
      case 0x49: { // INT (text; "00"/"01" are False/True)
        const text = line().trim();
        stack.push(text === '00' ? false : text === '01' ? true : integerText(text));
        break;
      }
      case 0x4c: // LONG (text)
        stack.push(integerText(line().trim().replace(/L$/, '')));
        break;
      case 0x47: // BINFLOAT
        need(8);
        stack.push(view.getFloat64(at, false));
        at += 8;
        break;
      case 0x46: // FLOAT (text)
        stack.push(Number(line()));
        break;
      case 0x58: // BINUNICODE
        stack.push(utf8(take(u32())));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(utf8(take(u8())));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(utf8(take(u64())));
        break;
      case 0x55: // SHORT_BINSTRING (Python 2 str)
        stack.push(new TextDecoder('latin1').decode(take(u8())));
        break;
      case 0x54: // BINSTRING
        stack.push(new TextDecoder('latin1').decode(take(u32())));
        break;
      case 0x42: // BINBYTES
        stack.push(take(u32()).slice());
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(take(u8()).slice());
        break;
      case 0x8e: // BINBYTES8
      case 0x96: // BYTEARRAY8
        stack.push(take(u64()).slice());
        break;
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x70: // PUT
        memo.set(Number(line()), top());
        break;
      case 0x68: // BINGET
      case 0x6a: // LONG_BINGET
      case 0x67: { // GET
        const index = op === 0x68 ? u8() : op === 0x6a ? u32() : Number(line());
        if (!memo.has(index)) fail(`memo entry ${index} is used before it is defined`);
        stack.push(memo.get(index)!);
        break;
      }
      case 0x30: // POP
        pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      case 0x63: { // GLOBAL
        const module = line();
        stack.push(global(module, line()));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL needs two strings');
        stack.push(global(module as string, name as string));
        break;
      }
      case 0x52: { // REDUCE
        const args = pop();
        const callable = pop();
        if (!(callable instanceof Global) || !Array.isArray(args)) fail('REDUCE needs a global and an argument tuple');
        stack.push(reduce(callable as Global, args as StackItem[], label));
        break;
      }
      case 0x62: { // BUILD
        const state = pop();
        build(top(), state, label);
        break;
      }
      case 0x81: // NEWOBJ
      case 0x92: { // NEWOBJ_EX
        if (op === 0x92) pop();
        pop();
        const cls = pop();
        throw invalidInput(`${label} creates an object of class ${cls instanceof Global ? cls.fullName : 'unknown'}, which is not allowed (only plain data and NumPy numbers and arrays are read from pickles)`);
      }
      default:
        fail(`opcode 0x${op.toString(16)} at byte ${at - 1} is not supported (expected a protocol 2-5 pickle of plain data)`);
    }
  }
}

function littleEndianSigned(data: Uint8Array): number | bigint {
  if (data.length === 0) return 0;
  // Through one hexadecimal string: shifting a BigInt byte by byte takes time quadratic in the length.
  let hexDigits = '';
  for (let i = data.length - 1; i >= 0; i--) hexDigits += data[i]!.toString(16).padStart(2, '0');
  let value = BigInt(`0x${hexDigits}`);
  if (data[data.length - 1]! & 0x80) value -= 1n << BigInt(8 * data.length);
  return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
}

function reduce(callable: Global, args: StackItem[], label: string): StackItem {
  const name = callable.fullName;
  if (RECONSTRUCT.has(name)) {
    const cls = args[0];
    if (!(cls instanceof Global) || cls.fullName !== 'numpy.ndarray') {
      throw invalidInput(`${label} reconstructs an array of class ${cls instanceof Global ? cls.fullName : 'unknown'}, which is not allowed (expected numpy.ndarray)`);
    }
    return new NdArray();
  }
  if (name === 'numpy.dtype') {
    const spec = args[0];
    const match = typeof spec === 'string' ? /^([a-zA-Z])(\d*)$/.exec(spec) : null;
    if (!match) throw invalidInput(`${label} holds a NumPy dtype ${JSON.stringify(String(spec))}, which is not supported (expected a plain number, string or object dtype)`);
    return new Dtype(match[1]!, match[2] ? Number(match[2]) : 0);
  }
  if (SCALAR.has(name)) {
    const [dtype, data] = args;
    if (!(dtype instanceof Dtype)) throw invalidInput(`${label} holds a NumPy scalar without a dtype`);
    if (dtype.kind === 'O') return data as StackItem;
    if (!(data instanceof Uint8Array)) throw invalidInput(`${label} holds a NumPy scalar without its bytes`);
    return decodeElements(dtype, data, 1, label)[0]!;
  }
  if (FROMBUFFER.has(name)) {
    const [buffer, dtype, shape, order] = args;
    if (!(buffer instanceof Uint8Array) || !(dtype instanceof Dtype) || !Array.isArray(shape)) {
      throw invalidInput(`${label} holds a NumPy array (_frombuffer) whose arguments are not bytes, dtype and shape`);
    }
    const array = new NdArray();
    array.shape = checkShape(shape, label);
    array.dtype = dtype;
    array.elements = decodeElements(dtype, buffer, product(array.shape), label);
    if (order === 'F' && array.shape.filter((size) => size > 1).length > 1) array.elements = fortranToC(array.elements, array.shape);
    return array;
  }
  if (name === '_codecs.encode') {
    // Protocol 2 pickles bytes as _codecs.encode(text, 'latin1'); only that is interpreted.
    const [text, encoding] = args;
    if (typeof text !== 'string' || (encoding !== 'latin1' && encoding !== 'latin-1')) {
      throw invalidInput(`${label} calls _codecs.encode with encoding ${JSON.stringify(encoding)}, which is not supported (expected latin1)`);
    }
    return Uint8Array.from(text, (char) => char.charCodeAt(0) & 0xff);
  }
  if (name === 'collections.OrderedDict') {
    const dict = new Map();
    const items = args[0];
    if (Array.isArray(items)) for (const pair of items) if (Array.isArray(pair)) dict.set(pair[0], pair[1]);
    return dict;
  }
  throw invalidInput(`${label} calls ${name}, which is not allowed`);
}

function build(target: StackItem, state: StackItem, label: string): void {
  if (target instanceof Dtype) {
    // (version, endian, subarray, names, fields, elsize, alignment, flags)
    if (Array.isArray(state) && typeof state[1] === 'string') target.endian = state[1];
    if (Array.isArray(state) && state[3] !== null && state[3] !== undefined) {
      throw invalidInput(`${label} holds a structured NumPy dtype, which is not supported (expected a plain number, string or object dtype)`);
    }
    return;
  }
  if (target instanceof NdArray) {
    // (version, shape, dtype, is_fortran, data): data is bytes, or a list of objects for object arrays.
    if (!Array.isArray(state) || state.length < 5) throw invalidInput(`${label} holds a NumPy array with an unreadable state`);
    const [, shape, dtype, isFortran, data] = state as StackItem[];
    if (!(dtype instanceof Dtype) || !Array.isArray(shape)) throw invalidInput(`${label} holds a NumPy array without a dtype or shape`);
    target.shape = checkShape(shape, label);
    target.dtype = dtype;
    const count = product(target.shape);
    if (Array.isArray(data)) {
      if (data.length !== count) throw invalidInput(`${label} holds a NumPy object array of shape (${target.shape.join(', ')}) with ${data.length} elements, expected ${count}`);
      target.elements = data as PickleValue[];
    } else if (data instanceof Uint8Array) target.elements = decodeElements(dtype, data, count, label);
    else throw invalidInput(`${label} holds a NumPy array whose data is neither bytes nor a list`);
    if (isFortran === true && target.shape.filter((size) => size > 1).length > 1) target.elements = fortranToC(target.elements, target.shape);
    return;
  }
  if (target instanceof Map && state instanceof Map) {
    for (const [key, value] of state) target.set(key, value);
    return;
  }
  throw invalidInput(`${label} sets the state of an object that is not plain data`);
}

function product(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** A shape of non-negative integers whose element count is a safe integer (it is checked against the data next). */
function checkShape(shape: StackItem[], label: string): number[] {
  if (shape.length > 32 || !shape.every((size) => typeof size === 'number' && Number.isSafeInteger(size) && size >= 0)) {
    throw invalidInput(`${label} holds a NumPy array whose shape is not a list of at most 32 sizes`);
  }
  const sizes = shape as number[];
  if (!Number.isSafeInteger(product(sizes))) throw invalidInput(`${label} holds a NumPy array of shape (${sizes.join(', ')}), more elements than any file holds`);
  return sizes;
}

function decodeElements(dtype: Dtype, data: Uint8Array, count: number, label: string): PickleValue[] {
  if (dtype.itemSize <= 0 && count > 0) throw invalidInput(`${label} holds a NumPy array of dtype ${dtype.kind}${dtype.size}, whose items have no size`);
  if (data.length < count * dtype.itemSize) {
    throw invalidInput(`${label} holds a NumPy array with ${data.length} bytes, expected ${count * dtype.itemSize}`);
  }
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const little = dtype.endian !== '>';
  const out: PickleValue[] = [];
  for (let i = 0; i < count; i++) {
    const at = i * dtype.itemSize;
    out.push(decodeOne(dtype, view, at, little, label));
  }
  return out;
}

function decodeOne(dtype: Dtype, view: DataView, at: number, little: boolean, label: string): PickleValue {
  const key = `${dtype.kind}${dtype.size}`;
  switch (key) {
    case 'b1':
      return view.getUint8(at) !== 0;
    case 'u1':
      return view.getUint8(at);
    case 'i1':
      return view.getInt8(at);
    case 'u2':
      return view.getUint16(at, little);
    case 'i2':
      return view.getInt16(at, little);
    case 'u4':
      return view.getUint32(at, little);
    case 'i4':
      return view.getInt32(at, little);
    case 'u8':
    case 'i8': {
      const value = key === 'u8' ? view.getBigUint64(at, little) : view.getBigInt64(at, little);
      return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
    }
    case 'f4':
      return view.getFloat32(at, little);
    case 'f8':
      return view.getFloat64(at, little);
    default:
      if (dtype.kind === 'U') {
        let text = '';
        for (let c = 0; c < dtype.size; c++) {
          const point = view.getUint32(at + c * 4, little);
          if (point === 0) break;
          if (point > 0x10ffff || (point >= 0xd800 && point <= 0xdfff)) {
            throw invalidInput(`${label} holds NumPy text that is not valid Unicode (code point 0x${point.toString(16)})`);
          }
          text += String.fromCodePoint(point);
        }
        return text;
      }
      throw invalidInput(`${label} holds NumPy data of dtype ${key}, which is not supported (expected bool, integers, float32/64 or str)`);
  }
}

function fortranToC(elements: PickleValue[], shape: number[]): PickleValue[] {
  const out = new Array<PickleValue>(elements.length);
  const cStrides = shape.map((_, d) => product(shape.slice(d + 1)));
  const fStrides = shape.map((_, d) => product(shape.slice(0, d)));
  for (let c = 0; c < elements.length; c++) {
    let f = 0;
    for (let d = 0; d < shape.length; d++) f += Math.floor(c / cStrides[d]!) % shape[d]! * fStrides[d]!;
    out[c] = elements[f]!;
  }
  return out;
}

/**
 * Turns the built objects into plain JS data: dict → object (keys as strings), ndarray → nested arrays (0-d → item).
 * An object referenced twice is built once, but weighs its full size at each reference (MAX_EXPANDED_BYTES); an
 * object that contains itself is refused (its plain form would have no end).
 */
function toPlain(value: StackItem, label: string): PickleValue {
  const done = new Map<unknown, { value: PickleValue; bytes: number }>();
  const building = new Set<unknown>();
  let expanded = 0;
  const charge = (bytes: number) => {
    expanded += bytes;
    if (expanded > MAX_EXPANDED_BYTES) {
      throw invalidInput(
        `${label} expands to more than ${MAX_EXPANDED_BYTES >> 20} MiB of data once its shared references are written out (a "billion laughs" pickle), far more than any metadata`,
      );
    }
  };
  const convert = (item: StackItem, depth: number): PickleValue => {
    if (depth > 200) throw invalidInput(`${label} is nested more than 200 levels deep, which is not supported`);
    if (item === MARK) throw invalidInput(`${label} leaves a MARK on the stack, which is not plain data`);
    if (item === null || typeof item !== 'object') {
      charge(typeof item === 'string' ? 8 + item.length : 8);
      return item as PickleValue;
    }
    if (item instanceof Uint8Array) {
      charge(8 + item.length);
      return item;
    }
    const cached = done.get(item);
    if (cached) {
      charge(cached.bytes);
      return cached.value;
    }
    if (building.has(item)) throw invalidInput(`${label} holds a list, dict or array that contains itself, which is not plain data`);
    if (item instanceof Global || item instanceof Dtype) {
      throw invalidInput(`${label} holds a ${item instanceof Global ? `reference to ${item.fullName}` : 'NumPy dtype'} as data, which is not supported`);
    }
    const before = expanded;
    building.add(item);
    let result: PickleValue;
    if (item instanceof NdArray) {
      const elements = item.elements.map((element) => convert(element as StackItem, depth + 1));
      const nest = (offset: number, dim: number): PickleValue => {
        if (dim === item.shape.length) return elements[offset]!;
        charge(8);
        const stride = product(item.shape.slice(dim + 1));
        return Array.from({ length: item.shape[dim]! }, (_, i) => nest(offset + i * stride, dim + 1));
      };
      result = nest(0, 0);
    } else if (Array.isArray(item)) {
      charge(8);
      const list: PickleValue[] = [];
      for (const element of item) list.push(convert(element as StackItem, depth + 1));
      result = list;
    } else if (item instanceof Map) {
      charge(8);
      const dict: { [key: string]: PickleValue } = {};
      for (const [key, element] of item) {
        const name = typeof key === 'string' ? key : JSON.stringify(convert(key as StackItem, depth + 1), (_, v) => (typeof v === 'bigint' ? v.toString() : v));
        if (typeof key === 'string') charge(8 + key.length);
        Object.defineProperty(dict, name, { value: convert(element as StackItem, depth + 1), enumerable: true, writable: true, configurable: true });
      }
      result = dict;
    } else {
      throw invalidInput(`${label} holds an object that is not plain data`);
    }
    building.delete(item);
    done.set(item, { value: result, bytes: expanded - before });
    return result;
  };
  return convert(value, 0);
}
