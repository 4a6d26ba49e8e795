//go:build ignore

// SPDX-License-Identifier: (MIT OR GPL-2.0-only)
//
// The smallest BPF LSM program: loading it tells whether the kernel lets
// BPF LSM programs in at all (LSMAvailable). It allows everything.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("lsm/file_open")
int lsm_probe(unsigned long long *ctx) { return 0; }

char _license[] SEC("license") = "GPL";
