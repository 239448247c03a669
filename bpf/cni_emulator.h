/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Map layouts of the CNI fast-path emulator (lab and tests only).
 *
 * lib/lab/emulator.ts encodes and decodes these structs; test/lab checks its
 * sizes against the BTF of build/bpf/cni_emulator.bpf.o.
 */
#ifndef CNI_EMULATOR_H
#define CNI_EMULATOR_H

#include <linux/types.h>

/* emu_routes: a local pod's IPv4 address (network order) -> its host veth. */
struct emu_route {
	__u32 ifindex; /* the host-side veth, in the netns the program runs in */
	__u32 flags;   /* EMU_ROUTE_* */
};

/* Don't peer-redirect to this pod at all (the CNI's opt-out, e.g. Calico's
 * skip for kubevirt.io=virt-launcher pods): every packet takes the kernel path. */
#define EMU_ROUTE_NO_REDIRECT (1U << 0)

/* emu_flows: one entry per flow seen at the emulator's hooks. */
struct emu_flow {
	__u32 saddr;
	__u32 daddr;
	__u16 sport; /* TCP/UDP source port, ICMP echo identifier */
	__u16 dport; /* TCP/UDP destination port, 0 for ICMP */
	__u8 proto;
	__u8 pad[3];
};

struct emu_flow_state {
	__u64 created_ns;   /* bpf_ktime_get_ns() of the flow's first packet */
	__u64 last_seen_ns; /* ... and of its latest packet */
	__u64 packets;
};

/* emu_config[0]. Zeroes mean the defaults. */
struct emu_config {
	__u64 idle_timeout_ns; /* an entry idle this long is gone: default 15 s */
	__u64 lifetime_ns;     /* an entry this old is gone, busy or not: 0 = never */
};

#define EMU_DEFAULT_IDLE_TIMEOUT_NS (15ULL * 1000 * 1000 * 1000)

/* emu_stats[0]: what the emulator did, for tests to assert on. */
struct emu_stats {
	__u64 first;      /* first packets of a flow, left to the kernel path */
	__u64 expired;    /* ... of which the flow had been seen before and timed out */
	__u64 redirected; /* established packets sent with bpf_redirect_peer() */
	__u64 opted_out;  /* packets to an EMU_ROUTE_NO_REDIRECT pod */
	__u64 other;      /* anything else: not IPv4, not to a local pod */
};

#endif /* CNI_EMULATOR_H */
