/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Map layouts shared by the BPF programs and user space.
 *
 * lib/dataplane/codec.ts encodes and decodes these structs; test/unit checks
 * its offsets and sizes against the BTF that clang writes into the object, so
 * this file is the one source of truth for the layout.
 */
#ifndef VMPEER_H
#define VMPEER_H

/* Key of the endpoint table: the guest's IP address as 16 bytes, IPv6 as is
 * and IPv4 mapped (::ffff:a.b.c.d), so one table serves both families. */
struct vmpeer_key {
	__u8 addr[16];
};

/* Endpoint flags. */
#define VMPEER_EP_REDIRECT (1U << 0) /* `redirect` may peer-redirect to host_ifindex */

/*
 * Value of the endpoint table. The table is per-CPU so that one lookup yields
 * both the addressing (written identically for every CPU by user space) and
 * this CPU's counters (incremented without atomics).
 */
struct vmpeer_endpoint {
	__u8 guest_mac[6];   /* the MAC the guest actually uses */
	__u8 gateway_mac[6]; /* the MAC of the VM pod's host-side veth */
	__u32 host_ifindex;  /* that veth's ifindex in the node netns */
	__u32 flags;         /* VMPEER_EP_* */
	__u32 pod_netns;     /* inode of the VM pod's netns: user-space bookkeeping */
	__u64 fixed;         /* frames `fixup` re-addressed to the guest */
	__u64 redirected;    /* frames `redirect` sent to the guest */
	__u64 passed;        /* frames for this guest left to the kernel */
};

/*
 * Global per-CPU counters: the stats map has one slot per outcome, and every
 * frame either program sees lands in exactly one slot.
 */
enum vmpeer_stat {
	VMPEER_STAT_FIXED = 0,        /* fixup: re-addressed to the guest */
	VMPEER_STAT_REDIRECTED,       /* redirect: peer-redirected to the guest */
	VMPEER_STAT_PASS_ADDRESSED,   /* fixup: already addressed to the guest */
	VMPEER_STAT_PASS_UNKNOWN,     /* destination IP is not a known guest */
	VMPEER_STAT_PASS_NOT_IP,      /* ARP, VLAN-tagged, other EtherTypes */
	VMPEER_STAT_PASS_NOT_UNICAST, /* broadcast or multicast destination MAC */
	VMPEER_STAT_PASS_MALFORMED,   /* truncated or invalid headers */
	VMPEER_STAT_PASS_TTL,         /* redirect: TTL / hop limit <= 1 */
	VMPEER_STAT_PASS_FRAGMENT,    /* redirect: IPv4 fragment */
	VMPEER_STAT_PASS_NOT_HOST,    /* redirect: frame not addressed to this host */
	VMPEER_STAT_PASS_NO_REDIRECT, /* redirect: endpoint not enabled for redirect */
	VMPEER_STAT_MAX,
};

#define VMPEER_MAX_ENDPOINTS 1024

#endif /* VMPEER_H */
