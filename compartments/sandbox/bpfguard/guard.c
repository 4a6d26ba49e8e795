//go:build ignore

// SPDX-License-Identifier: (MIT OR GPL-2.0-only)
//
// cgroup programs that confine one compartment's sockets:
//   cgroup/connect4, connect6  connect(2) only to allowlisted addr/port
//   cgroup/sendmsg4, sendmsg6  the same for unconnected datagrams (sendto)
//   cgroup/sock_create         no AF_INET/AF_INET6 sockets unless the
//                              family is allowed, never SOCK_RAW unless
//                              allow_raw
// Every denial is reported through the events ring buffer.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2
#define AF_INET6 10
#define SOCK_RAW 3

// Kinds of denial; keep in step with kind* in bpfguard.go.
enum kind {
	KIND_CONNECT4 = 1,
	KIND_CONNECT6 = 2,
	KIND_SENDMSG4 = 3,
	KIND_SENDMSG6 = 4,
	KIND_SOCK_CREATE = 5,
};

// An allowlist key: port (network order, 0 = any port) followed by the
// IPv6 address (IPv4 as ::ffff:a.b.c.d). An entry for prefix P on port N
// has prefixlen 16 + 128 - (host bits of P), so a lookup with the exact
// port and address finds it exactly when the address is in P.
struct allow_key {
	__u32 prefixlen;
	__u8 data[18];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1024);
	__type(key, struct allow_key);
	__type(value, __u8);
} allow SEC(".maps");

// families[f] != 0: sockets of address family f may be created.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u8);
} families SEC(".maps");

struct event {
	__u64 cgroup_id;
	__u32 pid;
	__u32 uid;
	__u32 kind;
	__u32 family;
	__u32 type;
	__u32 protocol;
	__u8 addr[16];
	__u16 port; // host order
	__u8 comm[16];
	__u8 pad[6];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

// lost[0] counts denials whose event did not fit into the ring buffer.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

volatile const __u8 allow_raw = 0;

// Keeps struct event in BTF so that bpf2go emits its Go type.
const struct event *unused_event __attribute__((unused));

static __always_inline void report(__u32 kind, __u32 family, __u32 type, __u32 protocol,
				   const __u8 *addr, __u16 port)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__u32 zero = 0;
		__u64 *n = bpf_map_lookup_elem(&lost, &zero);
		if (n)
			__sync_fetch_and_add(n, 1);
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->kind = kind;
	e->family = family;
	e->type = type;
	e->protocol = protocol;
	if (addr)
		__builtin_memcpy(e->addr, addr, 16);
	e->port = port;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, 0);
}

// allowed looks the address up with the port and with port 0 (any port).
static __always_inline int allowed(const __u8 *addr, __u16 port)
{
	struct allow_key k = {.prefixlen = 16 + 128};
	__builtin_memcpy(&k.data[2], addr, 16);
	if (bpf_map_lookup_elem(&allow, &k))
		return 1;
	k.data[0] = port >> 8;
	k.data[1] = port & 0xff;
	return bpf_map_lookup_elem(&allow, &k) != NULL;
}

static __always_inline int check4(struct bpf_sock_addr *ctx, __u32 kind)
{
	__u8 addr[16] = {};
	__u32 ip4 = ctx->user_ip4;
	__u16 port = bpf_ntohs(ctx->user_port);
	addr[10] = 0xff;
	addr[11] = 0xff;
	__builtin_memcpy(&addr[12], &ip4, 4);
	if (allowed(addr, port))
		return 1;
	report(kind, AF_INET, ctx->type, ctx->protocol, addr, port);
	return 0;
}

static __always_inline int check6(struct bpf_sock_addr *ctx, __u32 kind)
{
	__u32 ip6[4];
	__u16 port = bpf_ntohs(ctx->user_port);
	ip6[0] = ctx->user_ip6[0];
	ip6[1] = ctx->user_ip6[1];
	ip6[2] = ctx->user_ip6[2];
	ip6[3] = ctx->user_ip6[3];
	if (allowed((const __u8 *)ip6, port))
		return 1;
	report(kind, AF_INET6, ctx->type, ctx->protocol, (const __u8 *)ip6, port);
	return 0;
}

SEC("cgroup/connect4")
int connect4(struct bpf_sock_addr *ctx) { return check4(ctx, KIND_CONNECT4); }

SEC("cgroup/connect6")
int connect6(struct bpf_sock_addr *ctx) { return check6(ctx, KIND_CONNECT6); }

SEC("cgroup/sendmsg4")
int sendmsg4(struct bpf_sock_addr *ctx) { return check4(ctx, KIND_SENDMSG4); }

SEC("cgroup/sendmsg6")
int sendmsg6(struct bpf_sock_addr *ctx) { return check6(ctx, KIND_SENDMSG6); }

SEC("cgroup/sock_create")
int sock_create(struct bpf_sock *sk)
{
	__u32 family = sk->family;
	__u8 *ok = bpf_map_lookup_elem(&families, &family);
	if (ok && *ok && (sk->type != SOCK_RAW || allow_raw))
		return 1;
	report(KIND_SOCK_CREATE, family, sk->type, sk->protocol, NULL, 0);
	return 0;
}

char _license[] SEC("license") = "Dual MIT/GPL";
