//go:build ignore

// SPDX-License-Identifier: GPL-2.0-only
//
// The optional BPF LSM layer: labels are small integers, one per
// compartment. A labelled task (its cgroup v2 id is in task_labels) may not
// ptrace or signal a task of another label, nor open a labelled file of
// another label. Unlabelled tasks (the supervisor, the host) are not
// restricted here. Every denial is reported through the events ring buffer.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#define EPERM 1

// Kinds, after guard.c's; keep in step with kinds in bpfguard.go.
#define KIND_PTRACE 6
#define KIND_KILL 7
#define KIND_FILE_OPEN 8

// Just the fields used, relocated against the running kernel's BTF.
struct kernfs_node {
	__u64 id;
} __attribute__((preserve_access_index));
struct cgroup {
	struct kernfs_node *kn;
} __attribute__((preserve_access_index));
struct css_set {
	struct cgroup *dfl_cgrp;
} __attribute__((preserve_access_index));
struct task_struct {
	int tgid;
	struct css_set *cgroups;
} __attribute__((preserve_access_index));
struct super_block {
	__u32 s_dev;
} __attribute__((preserve_access_index));
struct inode {
	unsigned long i_ino;
	struct super_block *i_sb;
} __attribute__((preserve_access_index));
struct file {
	struct inode *f_inode;
} __attribute__((preserve_access_index));
struct kernel_siginfo;
struct cred;

struct file_key {
	__u64 ino;
	__u32 dev; // the kernel's encoding: major << 20 | minor
	__u32 pad;
};

// cgroup v2 id -> label
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u64);
	__type(value, __u32);
} task_labels SEC(".maps");

// file -> label
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct file_key);
	__type(value, __u32);
} file_labels SEC(".maps");

struct lsm_event {
	__u64 cgroup_id;
	__u64 target; // pid, or inode
	__u32 pid;
	__u32 uid;
	__u32 kind;
	__u32 subject; // label
	__u32 object;  // label
	__u32 arg;     // ptrace mode, signal, or device
	__u8 comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} lsm_events SEC(".maps");

const struct lsm_event *unused_lsm_event __attribute__((unused));

static __always_inline __u32 *subject_label(void)
{
	__u64 id = bpf_get_current_cgroup_id();
	return bpf_map_lookup_elem(&task_labels, &id);
}

static __always_inline void lsm_report(__u32 kind, __u32 subject, __u32 object, __u64 target, __u32 arg)
{
	struct lsm_event *e = bpf_ringbuf_reserve(&lsm_events, sizeof(*e), 0);
	if (!e)
		return;
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->target = target;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->kind = kind;
	e->subject = subject;
	e->object = object;
	e->arg = arg;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, 0);
}

// cross_task: a labelled subject may reach only tasks of its own label.
static __always_inline int cross_task(struct task_struct *t, __u32 kind, __u32 arg)
{
	__u32 *subj = subject_label();
	if (!subj)
		return 0;
	__u64 id = BPF_CORE_READ(t, cgroups, dfl_cgrp, kn, id);
	__u32 *obj = bpf_map_lookup_elem(&task_labels, &id);
	__u32 o = obj ? *obj : 0;
	if (o == *subj)
		return 0;
	lsm_report(kind, *subj, o, BPF_CORE_READ(t, tgid), arg);
	return -EPERM;
}

SEC("lsm/ptrace_access_check")
int BPF_PROG(ptrace_access_check, struct task_struct *child, unsigned int mode, int ret)
{
	if (ret)
		return ret;
	return cross_task(child, KIND_PTRACE, mode);
}

SEC("lsm/task_kill")
int BPF_PROG(task_kill, struct task_struct *p, struct kernel_siginfo *info, int sig, const struct cred *cred, int ret)
{
	if (ret)
		return ret;
	return cross_task(p, KIND_KILL, sig);
}

SEC("lsm/file_open")
int BPF_PROG(file_open, struct file *file, int ret)
{
	if (ret)
		return ret;
	__u32 *subj = subject_label();
	if (!subj)
		return 0;
	struct file_key k = {
		.ino = BPF_CORE_READ(file, f_inode, i_ino),
		.dev = BPF_CORE_READ(file, f_inode, i_sb, s_dev),
	};
	__u32 *obj = bpf_map_lookup_elem(&file_labels, &k);
	if (!obj || *obj == *subj)
		return 0;
	lsm_report(KIND_FILE_OPEN, *subj, *obj, k.ino, k.dev);
	return -EPERM;
}

char _license[] SEC("license") = "GPL";
