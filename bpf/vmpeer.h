/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Map layouts shared by the BPF programs and user space.
 *
 * lib/dataplane/codec.ts encodes and decodes these structs; test/unit checks
 * its offsets and sizes against the BTF that clang writes into the object, so
 * this file is the one source of truth for the layout. Any change to a struct
 * or enum here, or to a pinned map in vmpeer.bpf.c, raises LAYOUT_VERSION in
 * lib/dataplane/layout.ts: a new build then migrates the state an older one
 * pinned (lib/dataplane/migrate.ts).
 */
#ifndef VMPEER_H
#define VMPEER_H

/* A guest's IP address as 16 bytes: IPv6 as is, IPv4 mapped (::ffff:a.b.c.d),
 * so one table serves both families. */
struct vmpeer_key {
	__u8 addr[16];
};

/*
 * The endpoint table is an open-addressing hash table in a per-CPU array:
 * a lookup is an array access, not a walk of a hash map (about 15 ns less
 * per frame on this project's machines). The verifier inlines it on x86-64
 * from Linux 6.10 (commit db69718b8efa, "bpf: inline bpf_map_lookup_elem()
 * for PERCPU_ARRAY maps"); older kernels make it one helper call. A guest
 * lives in one of the VMPEER_PROBES slots that follow vmpeer_slot(its key);
 * a lookup stops at the first slot never used. User space is the only writer.
 *
 * Being per-CPU, one lookup yields both the addressing (written identically
 * for every CPU) and this CPU's counters (incremented without atomics).
 *
 * 4096 slots hold 1000 guests at a load of 1/4; with 32 probes a random
 * hash leaves a guest without a slot once in about 10^10 tables of 1000
 * (16 probes: once in 2 * 10^4). Memory: sizeof(struct vmpeer_endpoint) *
 * VMPEER_SLOTS * possible CPUs, 352 KiB per CPU.
 */
#define VMPEER_SLOT_BITS 12
#define VMPEER_SLOTS (1U << VMPEER_SLOT_BITS)
#define VMPEER_PROBES 32

/* Endpoint flags. A slot with no flags was never used. */
#define VMPEER_EP_LIVE (1U << 0)     /* the slot holds an endpoint */
#define VMPEER_EP_REDIRECT (1U << 1) /* `redirect` may peer-redirect to host_ifindex */
#define VMPEER_EP_DELETED (1U << 2)  /* held one: lookups probe past it */
#define VMPEER_EP_BYPASS (1U << 3)   /* frames skip the pod's bridge (uplink_ifindex, guest_ifindex) */

struct vmpeer_endpoint {
	struct vmpeer_key key; /* the guest IP this slot holds */
	__u8 guest_mac[6];     /* the MAC the guest actually uses */
	__u8 gateway_mac[6];   /* the MAC of the VM pod's host-side veth */
	__u32 host_ifindex;    /* that veth's ifindex in the node netns */
	__u32 flags;           /* VMPEER_EP_* */
	__u32 pod_netns;       /* inode of the VM pod's netns: user-space bookkeeping */
	__u32 uplink_ifindex;  /* the bridge's uplink port (eth0-nic), in the pod netns */
	__u32 guest_ifindex;   /* the bridge's guest port (tap0), in the pod netns */
	__u64 fixed;           /* frames `fixup` re-addressed to the guest */
	__u64 redirected;      /* frames `redirect` sent to the guest */
	__u64 passed;          /* frames for this guest left to the kernel */
	__u64 bypassed_in;     /* frames `fixup` sent straight to the guest port */
	__u64 bypassed_out;    /* frames `from_guest` sent straight into the host veth */
};

/*
 * The node's secret hash key: drawn at random by user space when it first
 * writes an empty table (lib/dataplane/endpoint-table.ts), kept in a
 * one-entry array pinned beside the table (root-only in bpffs), read by the
 * programs per frame (array lookups are inlined by the verifier on every
 * kernel vmpeer supports). Without it, which guest IPs share a home slot is
 * computable offline, and PROBES of them lock another guest out.
 */
struct vmpeer_hash_key {
	__u64 mul[4]; /* uniformly random */
	__u64 add;    /* uniformly random */
};

/*
 * The home slot of a key's four 32-bit words (as loaded on a little-endian
 * host): the keyed multiply-add sum over 64 bits (two distinct keys collide
 * there with probability <= 2^-32 over the key: Dietzfelbinger's vector
 * multiply-shift), then MurmurHash3's 64-bit finalizer, so that dense sets
 * (a /24, consecutive IPv6 addresses) do not land in the few long runs that
 * multiply-shift alone gives them for some keys, then the top SLOT_BITS.
 * lib/dataplane/endpoint-table.ts computes the same.
 */
static inline __u32 vmpeer_slot(const struct vmpeer_hash_key *k, const __u32 w[4])
{
	__u64 h = k->mul[0] * w[0] + k->mul[1] * w[1] + k->mul[2] * w[2] + k->mul[3] * w[3] + k->add;

	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h >> (64 - VMPEER_SLOT_BITS);
}

/*
 * Global per-CPU counters: the stats map has one slot per outcome, and every
 * frame either program sees lands in exactly one slot.
 */
enum vmpeer_stat {
	VMPEER_STAT_FIXED = 0,        /* fixup: re-addressed to the guest */
	VMPEER_STAT_REDIRECTED,       /* redirect: peer-redirected to the guest */
	VMPEER_STAT_PASS_ADDRESSED,   /* fixup: already addressed to the guest */
	VMPEER_STAT_PASS_UNKNOWN,     /* destination IP is not a known guest */
	VMPEER_STAT_PASS_NOT_IP,      /* ARP, VLAN-tagged (also with the tag in skb metadata), other EtherTypes */
	VMPEER_STAT_PASS_NOT_UNICAST, /* broadcast or multicast destination MAC */
	VMPEER_STAT_PASS_MALFORMED,   /* truncated or invalid headers */
	VMPEER_STAT_PASS_TTL,         /* redirect: TTL / hop limit <= 1 */
	VMPEER_STAT_PASS_FRAGMENT,    /* redirect: IPv4 fragment */
	VMPEER_STAT_PASS_NOT_HOST,    /* redirect: frame not addressed to this host */
	VMPEER_STAT_PASS_NO_REDIRECT, /* redirect: endpoint not enabled for redirect */
	VMPEER_STAT_BYPASSED_OUT,     /* from_guest: sent straight into the host veth */
	VMPEER_STAT_PASS_NOT_GATEWAY, /* from_guest: not from the guest's MAC to its gateway's */
	VMPEER_STAT_PASS_NO_BYPASS,   /* from_guest: guest not enabled for the bypass here */
	VMPEER_STAT_PASS_NEW_FLOW,    /* redirect: TCP SYN (or an IPv6 header chain it does not parse): the kernel path and its policy */
	VMPEER_STAT_MAX,
};


#endif /* VMPEER_H */
