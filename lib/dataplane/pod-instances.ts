/**
 * A VM pod's own instance of `fixup` and `from_guest`: the bridge bypass acts
 * only in the pod its endpoint belongs to (vmpeer.bpf.c, vmpeer_pod), so a
 * pod with the bypass runs programs that carry its netns inode as a
 * constant. Pods without the bypass share one fixup (constant 0), and pay
 * no load of their own.
 *
 * An instance is the shipped object loaded with only the pod programs, the
 * constant written into its .rodata, and the shared maps reused: the same
 * endpoints and counters as every other program. All instances of a program
 * have one tag (the tag ignores maps, kernel/bpf/core.c bpf_prog_calc_tag()),
 * so a record is checked for its tag and for its pod (verify.ts).
 */
import { BpfObject } from '../bpf/object.js';
import type { BpfMap } from '../bpf/map.js';
import type { Program } from '../bpf/program.js';
import { programConstants } from '../bpf/fdinfo.js';
import type { Native } from '../native.js';
import { PINNED_MAPS } from './pinned-maps.js';
import type { PodProgram, ProgramName } from './records.js';

/** The constant in vmpeer.bpf.c that scopes an instance to one pod. */
export const POD_CONSTANT = 'vmpeer_pod';
export const POD_PROGRAMS: readonly PodProgram[] = ['fixup', 'from_guest'];

/** Loads `pod`'s instance of the pod programs on `maps` (the endpoints and stats every program shares). */
export function loadPodInstance(n: Native, source: string | Buffer, maps: ReadonlyMap<string, BpfMap>, pod: number): BpfObject {
  if (!Number.isInteger(pod) || pod <= 0 || pod > 0xffffffff) throw new RangeError(`a pod instance needs a netns inode, not ${pod}`);
  const reuseMaps = Object.fromEntries(PINNED_MAPS.map((name) => [name, maps.get(name)!.fd]));
  return BpfObject.open(source, { programs: POD_PROGRAMS, constants: { [POD_CONSTANT]: pod }, reuseMaps }, n);
}

/** The pod a loaded program serves: its constant; 0 for the shared fixup, `redirect`, and programs of builds before pod instances. */
export function podOfProgram(n: Native, progId: number): number {
  return programConstants(n, progId)?.[POD_CONSTANT] ?? 0;
}

/**
 * Which instance a pod program at a hook in `pod` should be: from_guest is
 * always the pod's own (a shared one would pass every frame), fixup the
 * pod's own with the bypass, else the shared one (0).
 */
export function scopeFor(program: ProgramName, pod: number, bypass: boolean): number {
  if (program === 'from_guest') return pod;
  return program === 'fixup' && bypass ? pod : 0;
}

/**
 * The instances a process loaded, by pod. Loading one for a new pod closes
 * the others no attachment is waiting on: the kernel keeps an attached
 * program alive by itself, and the next load for that pod costs one verifier
 * run.
 */
export class PodInstances {
  private readonly loaded = new Map<number, { obj: BpfObject; busy: number }>();

  constructor(
    private readonly n: Native,
    private readonly source: string | Buffer,
    private readonly maps: ReadonlyMap<string, BpfMap>,
  ) {}

  program(name: PodProgram, pod: number): Program {
    return this.entry(pod).obj.program(name);
  }

  /** `pod`'s instance; loading it closes every other one nothing holds. */
  private entry(pod: number): { obj: BpfObject; busy: number } {
    let entry = this.loaded.get(pod);
    if (!entry) {
      for (const [other, e] of this.loaded) {
        if (e.busy > 0) continue;
        e.obj.close();
        this.loaded.delete(other);
      }
      entry = { obj: loadPodInstance(this.n, this.source, this.maps, pod), busy: 0 };
      this.loaded.set(pod, entry);
    }
    return entry;
  }

  /** Whether `pod`'s instance is loaded: attaching it costs no verifier run. */
  isLoaded(pod: number): boolean {
    return this.loaded.has(pod);
  }

  /** Loads `pod`'s instance ahead of its attachment, held until the returned function is called. */
  preload(pod: number): () => void {
    this.entry(pod);
    return this.hold(pod);
  }

  /** Instances loaded now (tests). */
  get size(): number {
    return this.loaded.size;
  }

  /** Keeps `pod`'s instance open until the returned function is called (an attachment under way uses its fd). */
  hold(pod: number): () => void {
    const entry = this.loaded.get(pod);
    if (!entry) return () => undefined;
    entry.busy++;
    return () => void entry.busy--;
  }

  /** Whether `progId` is one of the loaded instances' `name`. */
  has(name: PodProgram, progId: number): boolean {
    return [...this.loaded.values()].some((e) => e.obj.programs.get(name)?.id === progId);
  }

  close(): void {
    for (const e of this.loaded.values()) e.obj.close();
    this.loaded.clear();
  }
}
