/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* FROZEN TEST FIXTURE: bpf/vmpeer.h of layout 2 (commit 95881e9); see v2_vmpeer.bpf.c. */
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
#ifndef VMPEER_V2_H
#define VMPEER_V2_H

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
 */
#define VMPEER_SLOT_BITS 10
#define VMPEER_SLOTS (1U << VMPEER_SLOT_BITS)
#define VMPEER_PROBES 16

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

/* Fibonacci hashing of the key's four 32-bit words (as loaded on a
 * little-endian host); lib/dataplane/endpoint-table.ts computes the same. */
static inline __u32 vmpeer_slot(const __u32 w[4])
{
	return ((w[0] ^ w[1] ^ w[2] ^ w[3]) * 0x9e3779b1U) >> (32 - VMPEER_SLOT_BITS);
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


#endif /* VMPEER_V2_H */
