/**
 * BPF built by the benchmark itself, for its diagnostic paths. None of it
 * ships and none of it is vmpeer's data path:
 *
 *   - a `fixup` variant that leaves pkt_type alone: bpf/vmpeer.bpf.c compiled
 *     with bpf_skb_change_type() defined away, to measure what the fixup's
 *     pkt_type choice costs;
 *   - a bridge-bypass prototype: after `fixup`, frames for the guest go
 *     straight to the tap's egress (bpf_redirect) instead of through the pod's
 *     bridge; frames from the guest to the gateway MAC go from the tap's
 *     ingress straight into the host veth (bpf_redirect_peer on eth0-nic).
 *     It measures what a bridge-less VM pod data path would buy.
 *
 * Both are compiled with the flags of scripts/build-bpf into a temporary
 * directory when the benchmark starts.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BpfObject } from '../../lib/bpf/object.js';
import type { Link } from '../../lib/bpf/link.js';
import { packageRoot } from '../../lib/native.js';

const BYPASS_SOURCE = String.raw`// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// Benchmark prototype (scripts/bench/prototypes.ts): a VM pod data path without the bridge.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct bypass_config {
	__u8 match_mac[6]; /* only unicast IPv4 frames to this MAC move */
	__u16 peer;        /* 1: bpf_redirect_peer(ifindex), 0: bpf_redirect(ifindex) to its egress */
	__u32 ifindex;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bypass_config);
} bypass_config SEC(".maps");

SEC("tc")
int bypass(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct bypass_config *c;
	__u32 zero = 0;

	const __u16 *dst = data, *want;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_UNSPEC;
	c = bpf_map_lookup_elem(&bypass_config, &zero);
	if (!c || !c->ifindex)
		return TC_ACT_UNSPEC;
	want = (const __u16 *)c->match_mac;
	if ((dst[0] ^ want[0]) | (dst[1] ^ want[1]) | (dst[2] ^ want[2]))
		return TC_ACT_UNSPEC;
	return c->peer ? bpf_redirect_peer(c->ifindex, 0) : bpf_redirect(c->ifindex, 0);
}
`;

export interface Prototypes {
  dir: string;
  /** bpf/vmpeer.bpf.c without bpf_skb_change_type(); null when it could not be built. */
  noPktTypeObject: string | null;
  /** Whether that variant's fixup really differs from the shipped one (fewer instructions). */
  noPktTypeDiffers: boolean;
  bypassObject: string | null;
  errors: string[];
  remove(): void;
}

function clangFlags(): string[] {
  const multiarch = spawnSync('gcc', ['-print-multiarch'], { encoding: 'utf8' }).stdout?.trim() || 'x86_64-linux-gnu';
  return ['-target', 'bpf', '-O2', '-g', '-Wall', '-Werror', `-I/usr/include/${multiarch}`, `-I${path.join(packageRoot, 'bpf')}`];
}

function compile(src: string, out: string, extra: string[] = []): string | null {
  const r = spawnSync(process.env.CLANG ?? 'clang', [...clangFlags(), ...extra, '-c', src, '-o', out], { encoding: 'utf8', timeout: 120_000 });
  if (r.error) return r.error.message;
  return r.status === 0 ? null : (r.stderr || `clang exit ${r.status}`).trim();
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
  const e1 = compile(path.join(packageRoot, 'bpf', 'vmpeer.bpf.c'), variant, ['-Dbpf_skb_change_type(skb, type)=0']);
  if (e1) errors.push(`fixup without pkt_type: ${e1}`);
  else {
    noPktTypeObject = variant;
    try {
      noPktTypeDiffers = fixupInsns(variant) < fixupInsns(path.join(packageRoot, 'dist', 'bpf', 'vmpeer.bpf.o'));
    } catch (e) {
      errors.push(`fixup without pkt_type: ${(e as Error).message}`);
    }
  }
  const src = path.join(dir, 'bypass.bpf.c');
  fs.writeFileSync(src, BYPASS_SOURCE);
  const bypass = path.join(dir, 'bypass.bpf.o');
  const e2 = compile(src, bypass);
  if (e2) errors.push(`bridge bypass prototype: ${e2}`);
  return {
    dir,
    noPktTypeObject,
    noPktTypeDiffers,
    bypassObject: e2 ? null : bypass,
    errors,
    remove: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

function macBytes(mac: string): Buffer {
  return Buffer.from(mac.split(':').map((h) => parseInt(h, 16)));
}

/** One attached instance of the bypass prototype (its own object, so its own config). */
export class BypassHook {
  private readonly obj: BpfObject;
  private link: Link | null = null;

  constructor(object: string) {
    this.obj = BpfObject.open(object);
  }

  /** Attaches at tc ingress of `ifname` in `netns` (after what is there): frames to `matchMac` go to `ifindex`. */
  attach(netns: string, ifname: string, config: { matchMac: string; ifindex: number; peer: boolean }): void {
    const v = Buffer.alloc(12);
    macBytes(config.matchMac).copy(v, 0);
    v.writeUInt16LE(config.peer ? 1 : 0, 6);
    v.writeUInt32LE(config.ifindex, 8);
    this.obj.map('bypass_config').update(Buffer.alloc(4), v);
    this.link = this.obj.program('bypass').attach({ netns, ifname, hook: 'ingress' });
  }

  close(): void {
    try {
      this.link?.detach();
    } catch {
      // the netns is gone, and the attachment with it
    }
    this.link = null;
    this.obj.close();
  }
}
