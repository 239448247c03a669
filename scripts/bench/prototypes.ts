/**
 * BPF built by the benchmark itself, for its diagnostic paths; it does not
 * ship: a `fixup` variant that leaves pkt_type alone (bpf/vmpeer.bpf.c
 * compiled with bpf_skb_change_type() defined away), to measure what the
 * fixup's pkt_type choice costs. Compiled with the flags of scripts/build-bpf (bpf/clang.flags)
 * into a temporary directory when the benchmark starts.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BpfObject } from '../../lib/bpf/object.js';
import { packageRoot } from '../../lib/native.js';
import { compileBpf } from '../../lib/testkit/clang.js';

export interface Prototypes {
  dir: string;
  /** bpf/vmpeer.bpf.c without bpf_skb_change_type(); null when it could not be built. */
  noPktTypeObject: string | null;
  /** Whether that variant's fixup really differs from the shipped one (fewer instructions). */
  noPktTypeDiffers: boolean;
  errors: string[];
  remove(): void;
}

function fixupInsns(object: string): number {
  const o = BpfObject.open(object);
  try {
    return o.program('fixup').insnCount;
  } finally {
    o.close();
  }
}

export function buildPrototypes(): Prototypes {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `vmpeer-bench-bpf-${process.pid}-`));
  const errors: string[] = [];
  const variant = path.join(dir, 'vmpeer-no-pkt-type.bpf.o');
  let noPktTypeObject: string | null = null;
  let noPktTypeDiffers = false;
  // a function-like macro: the helper's declaration (not followed by '(') is untouched, its calls become 0
  const e1 = compileBpf(path.join(packageRoot, 'bpf', 'vmpeer.bpf.c'), variant, ['-Dbpf_skb_change_type(skb, type)=0']);
  if (e1) errors.push(`fixup without pkt_type: ${e1}`);
  else {
    noPktTypeObject = variant;
    try {
      noPktTypeDiffers = fixupInsns(variant) < fixupInsns(path.join(packageRoot, 'dist', 'bpf', 'vmpeer.bpf.o'));
    } catch (e) {
      errors.push(`fixup without pkt_type: ${(e as Error).message}`);
    }
  }
  return {
    dir,
    noPktTypeObject,
    noPktTypeDiffers,
    errors,
    remove: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}
