// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Test-only: a per-CPU hash map with a 16-byte key and a 48-byte value, for the addon's map tests. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct value {
	__u8 bytes[48];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u8[16]);
	__type(value, struct value);
} table SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 11);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

SEC("tc")
int noop(struct __sk_buff *skb)
{
	__u8 key[16] = {};
	__u32 zero = 0;

	/* reference both maps so that they belong to the program */
	bpf_map_lookup_elem(&table, key);
	bpf_map_lookup_elem(&stats, &zero);
	return TC_ACT_UNSPEC;
}
