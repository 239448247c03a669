/**
 * Property test: thousands of random, built and mutated frames through both
 * programs, compared with an independent model (test/helpers/model.ts). In
 * particular, no frame for an unknown guest is ever modified or redirected.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { CLIENT_MAC, GATEWAY_MAC, HOST_IFINDEX, HOST_MAC, NODE_MAC, TC_ACT_UNSPEC, fixture } from '../helpers/bpf.js';
import { frames } from '../../lib/testkit/packets.js';
import { modelFixup, modelFromGuest, modelRedirect, type ModelEndpoint } from '../helpers/model.js';
import { encodeKey } from '../../lib/dataplane/codec.js';
import { macToBytes } from '../../lib/validate.js';

const FRAMES_PER_PROGRAM = 12_000;

/** A small deterministic PRNG (mulberry32) so a failure can be replayed from its seed. */
function prng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// BPF_PROG_TEST_RUN runs the programs on loopback (ifindex 1), the pod
// programs as POD's own instances: the first guest bypasses the bridge in
// both directions there, the third only from the guest; the fourth has the
// same ports in another pod, whose bypass this instance never takes
const POD = 4026530001;
const guests = [
  { guestIp: '198.18.1.10', guestMac: '52:54:00:00:00:0a', bypass: { uplinkIfindex: 1, guestIfindex: 1 }, podNetns: POD },
  { guestIp: '198.18.1.11', guestMac: '52:54:00:00:00:0b', redirect: false, podNetns: POD },
  { guestIp: '2001:db8::a', guestMac: '52:54:00:00:00:0c', bypass: { uplinkIfindex: 99, guestIfindex: 1 }, podNetns: POD },
  { guestIp: '198.18.1.13', guestMac: '52:54:00:00:00:0d', bypass: { uplinkIfindex: 1, guestIfindex: 1 }, podNetns: POD + 1 },
];
const strangers = ['198.18.1.12', '198.18.2.10', '10.0.0.1', '2001:db8::b', '::ffff:198.18.1.99', 'fe80::1'];

/** Frames towards the guests (fixup, redirect) or from them (from_guest). */
function generator(seed: number, direction: 'to guest' | 'from guest') {
  const rand = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  // half the frames are addressed to "this host" (loopback's MAC), the others anywhere
  const dstMacs = [HOST_MAC, HOST_MAC, HOST_MAC, HOST_MAC, HOST_MAC, HOST_MAC, NODE_MAC, GATEWAY_MAC, '52:54:00:00:00:0a', 'ff:ff:ff:ff:ff:ff', '33:33:00:00:00:01', '02:12:34:56:78:9a'];
  // from a guest, most frames go to the gateway, from the guest's MAC or another
  const gatewayMacs = [GATEWAY_MAC, GATEWAY_MAC, GATEWAY_MAC, GATEWAY_MAC, HOST_MAC, '02:12:34:56:78:9a', 'ff:ff:ff:ff:ff:ff', '33:33:00:00:00:01'];
  const srcMacs = [...guests.map((g) => g.guestMac), CLIENT_MAC];
  return (): Buffer => {
    const kind = rand();
    if (kind < 0.15) return randomBytes(14 + Math.floor(rand() * 80)); // noise
    // from a guest, only two of the guests take the bypass there (the rewrite path): the guests come up
    // more often than the strangers, so that thousands of frames take it, not about 500
    const guest = direction === 'from guest' && rand() < 0.5 ? pick(guests.map((g) => g.guestIp)) : pick([...guests.map((g) => g.guestIp), ...strangers]);
    const peer = guest.includes(':') ? '2001:db8:1::2' : '198.18.0.2';
    const ttl = Math.floor(rand() * 256);
    const ownMac = guests.find((g) => g.guestIp === guest)?.guestMac;
    const srcMac = ownMac && rand() < 0.75 ? ownMac : pick(srcMacs);
    const built = direction === 'to guest' ? frames(pick(dstMacs), CLIENT_MAC, peer, guest, ttl) : frames(pick(gatewayMacs), srcMac, guest, peer, ttl);
    const frame = Buffer.from(pick(Object.values(built)));
    if (kind < 0.55) return frame; // well-formed
    // mutate: flip a few bytes, mostly in the headers, sometimes truncate
    for (let i = Math.floor(rand() * 4); i >= 0; i--) {
      const at = Math.floor(rand() * Math.min(frame.length, 60));
      frame[at] = frame[at]! ^ (1 << Math.floor(rand() * 8));
    }
    return rand() < 0.2 ? frame.subarray(0, 14 + Math.floor(rand() * (frame.length - 14))) : frame;
  };
}

function modelEndpoints(): Map<string, ModelEndpoint> {
  return new Map(guests.map((g) => [
    encodeKey(g.guestIp).toString('hex'),
    { guestMac: macToBytes(g.guestMac), gatewayMac: macToBytes(GATEWAY_MAC), hostIfindex: HOST_IFINDEX, redirect: g.redirect ?? true, bypass: g.bypass ?? null, podNetns: g.podNetns },
  ]));
}

const MODELS = { fixup: modelFixup, redirect: modelRedirect, from_guest: modelFromGuest } as const;
const REWRITE_STAT = { fixup: 'fixed', redirect: 'redirected', from_guest: 'bypassedOut' } as const;

for (const program of ['fixup', 'redirect', 'from_guest'] as const) {
  test(`${program} matches the model on ${FRAMES_PER_PROGRAM} random and mutated frames`, (t) => {
    const seed = Number(process.env.VMPEER_SEED ?? Date.now() % 1e9);
    t.log(`seed ${seed} (replay with VMPEER_SEED=${seed})`);
    const f = fixture(t, guests);
    const endpoints = modelEndpoints();
    const known = new Set(endpoints.keys());
    const next = generator(seed, program === 'from_guest' ? 'from guest' : 'to guest');
    const expectedStats = new Map<string, bigint>();
    let unknownSeen = 0;

    let refused = 0;
    for (let i = 0; i < FRAMES_PER_PROGRAM; i++) {
      const frame = next();
      const pod = program === 'redirect' ? 0 : POD;
      const want = program === 'redirect' ? modelRedirect(frame, endpoints) : MODELS[program](frame, endpoints, 1, pod);
      let got;
      try {
        got = f.run(program, frame, 1, pod);
      } catch (e) {
        // BPF_PROG_TEST_RUN refuses IP frames shorter than their IP header; live.test.ts covers those
        if (!shortIpHeader(frame)) throw e;
        refused++;
        i--;
        continue;
      }
      if (got.retval !== want.retval || !got.data.equals(want.frame)) {
        t.fail(`frame ${i} (seed ${seed}): ${frame.toString('hex')}\n got ${got.retval} ${got.data.toString('hex')}\nwant ${want.retval} ${want.frame.toString('hex')}`);
        return;
      }
      expectedStats.set(want.stat, (expectedStats.get(want.stat) ?? 0n) + 1n);
      const [at6, at4] = program === 'from_guest' ? [22, 26] : [38, 30];
      const key6 = frame.length >= 54 && frame.readUInt16BE(12) === 0x86dd ? frame.subarray(at6, at6 + 16).toString('hex') : null;
      const key4 = frame.length >= 34 && frame.readUInt16BE(12) === 0x0800 ? encodeKeyFromV4(frame.subarray(at4, at4 + 4)) : null;
      if (!known.has(key6 ?? key4 ?? '')) {
        unknownSeen++;
        if (got.retval !== TC_ACT_UNSPEC || !got.data.equals(frame)) t.fail(`frame ${i} for an unknown guest was changed`);
      }
    }
    t.log(`${refused} short-header frames refused by the kernel were replaced`);
    const stats = f.stats();
    for (const [stat, n] of expectedStats) t.is(stats[stat as keyof typeof stats], n, `stat ${stat}`);
    t.true(unknownSeen > FRAMES_PER_PROGRAM / 4, `${unknownSeen} frames for unknown guests`);
    const rewritten = expectedStats.get(REWRITE_STAT[program]) ?? 0n;
    t.log(`${rewritten} frames took the rewrite path`);
    t.true(rewritten > 500n, `enough frames took the rewrite path (${rewritten})`);
  });
}

function shortIpHeader(frame: Buffer): boolean {
  const type = frame.readUInt16BE(12);
  return (type === 0x0800 && frame.length < 34) || (type === 0x86dd && frame.length < 54);
}

function encodeKeyFromV4(addr: Buffer): string {
  return Buffer.concat([Buffer.alloc(10), Buffer.from([0xff, 0xff]), addr]).toString('hex');
}
