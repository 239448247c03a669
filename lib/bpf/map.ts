/** A BPF map by fd, with per-CPU values split and joined for the caller. */
import type { Native, NativeMap } from '../native.js';
import { fromNative } from '../errors.js';

/** enum bpf_map_type values (include/uapi/linux/bpf.h) vmpeer meets. */
export const BPF_MAP_TYPE_HASH = 1;
export const BPF_MAP_TYPE_ARRAY = 2;
export const BPF_MAP_TYPE_PERCPU_HASH = 5;
export const BPF_MAP_TYPE_PERCPU_ARRAY = 6;
export const BPF_MAP_TYPE_LRU_HASH = 9;
export const BPF_MAP_TYPE_LRU_PERCPU_HASH = 10;

/** The map types whose values the kernel keeps once per possible CPU. */
export const PERCPU_MAP_TYPES: ReadonlySet<number> = new Set([BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY, BPF_MAP_TYPE_LRU_PERCPU_HASH]);

export const BPF_ANY = 0;
export const BPF_NOEXIST = 1;
export const BPF_EXIST = 2;

/**
 * An array map read whole: entry i's value for CPU c starts at
 * i * entryBytes + c * stride in raw (per-CPU values are 8-byte aligned).
 */
export interface MapBatch {
  raw: Buffer;
  entries: number;
  entryBytes: number;
  stride: number;
  cpus: number;
}

export class BpfMap {
  readonly name: string;
  readonly id: number;
  readonly keySize: number;
  readonly valueSize: number;
  readonly perCpu: boolean;
  readonly pinPath: string | null;
  readonly fd: number;
  private readonly cpus: number;

  constructor(private readonly n: Native, info: NativeMap) {
    this.name = info.name;
    this.id = info.id;
    this.fd = info.fd;
    this.keySize = info.keySize;
    this.valueSize = info.valueSize;
    this.pinPath = info.pinPath;
    this.perCpu = PERCPU_MAP_TYPES.has(info.type);
    this.cpus = this.perCpu ? n.possibleCpus() : 1;
  }

  /** The kernel stores per-CPU values 8-byte aligned, one per possible CPU. */
  private get stride(): number {
    return this.perCpu ? Math.ceil(this.valueSize / 8) * 8 : this.valueSize;
  }

  /** The value, one buffer per possible CPU (a single one for ordinary maps); null when absent. */
  lookup(key: Buffer): Buffer[] | null {
    this.checkKey(key);
    let raw: Buffer | null;
    try {
      raw = this.n.mapLookup(this.fd, key, this.stride * this.cpus);
    } catch (e) {
      throw fromNative(e, `reading map ${this.name}`);
    }
    if (!raw) return null;
    return Array.from({ length: this.cpus }, (_, cpu) => raw.subarray(cpu * this.stride, cpu * this.stride + this.valueSize));
  }

  /** Every slot of an array map, slot 0 first, each split per CPU like lookup(): one batch read. */
  lookupAll(): Buffer[][] {
    return this.lookupWhere(() => true);
  }

  /** Every slot of an array map in one batch read, left as the kernel wrote it (MapBatch says where each value is). */
  batch(): MapBatch {
    let raw: Buffer;
    try {
      raw = this.n.mapLookupAll(this.fd);
    } catch (e) {
      throw fromNative(e, `reading map ${this.name}`);
    }
    const entryBytes = this.stride * this.cpus;
    return { raw, entries: Math.floor(raw.length / entryBytes), entryBytes, stride: this.stride, cpus: this.cpus };
  }

  /**
   * The values of the entries that `keep` wants, told by their first CPU value at `at` in the batch (read in
   * the same batch): a table read whole, with only the entries wanted cut out.
   */
  lookupWhere(keep: (batch: Buffer, at: number) => boolean): Buffer[][] {
    const { raw, entries, entryBytes, stride, cpus } = this.batch();
    const out: Buffer[][] = [];
    for (let i = 0, at = 0; i < entries; i++, at += entryBytes) {
      if (!keep(raw, at)) continue;
      out.push(Array.from({ length: cpus }, (_, cpu) => raw.subarray(at + cpu * stride, at + cpu * stride + this.valueSize)));
    }
    return out;
  }

  /** Writes a value: one buffer for every CPU, or one buffer per CPU. */
  update(key: Buffer, value: Buffer | Buffer[], flags = BPF_ANY): void {
    this.checkKey(key);
    const values = Array.isArray(value) ? value : Array<Buffer>(this.cpus).fill(value);
    if (values.length !== this.cpus || values.some((v) => v.length !== this.valueSize)) {
      throw new TypeError(`map ${this.name}: expected ${this.cpus} value(s) of ${this.valueSize} bytes`);
    }
    const raw = Buffer.alloc(this.stride * this.cpus);
    values.forEach((v, cpu) => v.copy(raw, cpu * this.stride));
    try {
      this.n.mapUpdate(this.fd, key, raw, flags);
    } catch (e) {
      throw fromNative(e, `writing map ${this.name}`);
    }
  }

  /** Returns false when the key was not there. */
  delete(key: Buffer): boolean {
    this.checkKey(key);
    try {
      return this.n.mapDelete(this.fd, key);
    } catch (e) {
      throw fromNative(e, `deleting from map ${this.name}`);
    }
  }

  keys(): Buffer[] {
    try {
      return this.n.mapKeys(this.fd, this.keySize);
    } catch (e) {
      throw fromNative(e, `listing map ${this.name}`);
    }
  }

  private checkKey(key: Buffer): void {
    if (key.length !== this.keySize) throw new TypeError(`map ${this.name}: key must be ${this.keySize} bytes, got ${key.length}`);
  }
}
