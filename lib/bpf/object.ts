/**
 * A loaded BPF object and its programs and maps (cilium/ebpf's Collection):
 * open once, take what you need, close.
 */
import { native as loadNative, type BtfStruct, type Native, type NativeObject, type OpenOptions } from '../native.js';
import { fromNative, UsageError } from '../errors.js';
import { BpfMap } from './map.js';
import { Program } from './program.js';

export class BpfObject {
  readonly programs: ReadonlyMap<string, Program>;
  readonly maps: ReadonlyMap<string, BpfMap>;

  private constructor(private readonly handle: NativeObject, n: Native) {
    this.programs = new Map(handle.programs.map((p) => [p.name, new Program(n, p)]));
    this.maps = new Map(handle.maps.map((m) => [m.name, new BpfMap(n, m)]));
  }

  /** Loads an object file (or its bytes) into the kernel. */
  static open(source: string | Buffer, options: OpenOptions = {}, n: Native = loadNative()): BpfObject {
    try {
      return new BpfObject(n.openObject(source, options), n);
    } catch (e) {
      throw fromNative(e, `loading ${typeof source === 'string' ? source : 'BPF object'}`);
    }
  }

  program(name: string): Program {
    const p = this.programs.get(name);
    if (!p) throw new UsageError(`the object has no program '${name}' (it has: ${[...this.programs.keys()].join(', ')})`);
    return p;
  }

  map(name: string): BpfMap {
    const m = this.maps.get(name);
    if (!m) throw new UsageError(`the object has no map '${name}' (it has: ${[...this.maps.keys()].join(', ')})`);
    return m;
  }

  btfStruct(name: string): BtfStruct | null {
    return this.handle.btfStruct(name);
  }

  /** Releases the object's fds; attachments that are pinned or filters stay. */
  close(): void {
    this.handle.close();
  }
}
