// Package redteam is the attack side of the e2e red-team suite: the attacks a
// compromised compartment (or gate agent) tries from inside its own
// confinement, and what each must leave in the audit log. The e2e test
// builds e2e/testdata/redprobe (a thin main around Run) into a running
// compartment's image, runs it there with `runc exec` and matches every
// Result to its audit record(s).
//
// Test code only: no production program links it.
package redteam

import (
	"fmt"
	"slices"
	"strings"

	"github.com/e2sgate/e2sgate/internal/auditlog"
)

// Plan is what the test tells the probe: who it plays and where the things
// it attacks are (host paths and addresses; most are not in its namespaces
// at all, which is part of what it proves).
type Plan struct {
	Compartment string `json:"compartment"` // "outside" … "inside", or "gate"
	// GateSocket is the compartment's own gate socket (empty for the gate
	// agent, which serves them).
	GateSocket string `json:"gate_socket,omitempty"`
	// Token prefixes the caller request id of every call it makes, so the
	// test finds each call's record (caller_req_id).
	Token string `json:"token"`
	// Files are other compartments' data and keys, named as in the suite
	// ("keyhandler_key", "purchasing_db", ...); absent names are skipped.
	Files map[string]string `json:"files"`
	// Sockets: "admin", "metrics", "other_plugin", "other_gate".
	Sockets map[string]string `json:"sockets"`
	// Static is a file of the web front's static content; Policy a file of
	// the active policy set.
	Static string `json:"static"`
	Policy string `json:"policy"`
	// Pids are host pids of other processes (the supervisor, another
	// compartment's program).
	Pids map[string]int `json:"pids"`
	// Addrs: "host", "internal", "acquirer", "internet" (TCP ip:port),
	// "internet6".
	Addrs map[string]string `json:"addrs"`
	// Identity is what a compromised web front can put in a call: a
	// registered manager's certificate (public), her fingerprint, and a
	// request she signed that purchasing has already served (to replay).
	ManagerCert string            `json:"manager_cert"`
	ManagerFP   string            `json:"manager_fp"`
	Replay      map[string]string `json:"replay"` // meta of the signed GET purchasing/private
	// Own is what the party may do (the controls: a probe that can do
	// nothing proves nothing): "data", a directory it may write, and for
	// the gate agent "plugin", a compartment's plugin socket.
	Own map[string]string `json:"own"`
	// Flood sizes: calls and connections.
	FloodCalls int `json:"flood_calls"`
	FloodConns int `json:"flood_conns"`
}

// Result is one attack's outcome.
type Result struct {
	Name string `json:"name"`
	// Class: "kernel" (files, processes, syscalls, sockets, network),
	// "gate" (calls through the compartment's gate socket) or "control"
	// (what the party may do; it must succeed).
	Class string `json:"class"`
	// OK: the attack got what it wanted. Any OK is a finding.
	OK bool `json:"ok"`
	// Errno is the decisive step's errno ("EPERM"), Status the gate's answer.
	Errno  string `json:"errno,omitempty"`
	Status int    `json:"status,omitempty"`
	Reason string `json:"reason,omitempty"` // X-E2S-Reason of the answer
	// Steps say what each step got, in order ("openat /x: ENOENT").
	Steps []string `json:"steps"`
	// Audit are the records, any one of which audits the attack.
	Audit []Want `json:"audit"`
}

// Want describes an audit record that accounts for an attack.
type Want struct {
	// ReqID: the record of the call with this caller_req_id.
	ReqID string `json:"req_id,omitempty"`
	// Kinds (the record's script, e.g. "kernel/seccomp") and Reason; Detail
	// must occur in the record's detail.
	Kinds  []string `json:"kinds,omitempty"`
	Reason string   `json:"reason,omitempty"`
	Detail string   `json:"detail,omitempty"`
	// Access is what the layer's aggregate records are per (the
	// supervisor aggregates by compartment and what was denied): the
	// syscall ("mount("), the Landlock access ("fs.read_dir"). An
	// aggregate's detail begins with it.
	Access string `json:"access,omitempty"`
}

func (w Want) String() string {
	if w.ReqID != "" {
		return "req " + w.ReqID
	}
	return fmt.Sprintf("%s %s %q", strings.Join(w.Kinds, "|"), w.Reason, w.Detail)
}

// Matches reports whether rec, written on behalf of compartment, is w.
func (w Want) Matches(compartment string, rec auditlog.Record) bool {
	if w.ReqID != "" {
		return rec.CallerReqID == w.ReqID && rec.Caller == compartment
	}
	return rec.Caller == compartment && rec.Decision == "deny" && slices.Contains(w.Kinds, rec.Script) &&
		(w.Reason == "" || rec.Reason == w.Reason) && strings.Contains(rec.Detail, w.Detail)
}

// MatchesAggregate reports whether rec is an aggregate record (one that
// stands for several denials, Count > 1) of w's kind and reason for
// compartment. An aggregate's detail names only its last denial (the
// supervisor aggregates a layer's denials by compartment and what was
// denied: the syscall, the access right), so its detail is not matched; it
// accounts for at most Count attacks.
func (w Want) MatchesAggregate(compartment string, rec auditlog.Record) bool {
	return w.ReqID == "" && w.Access != "" && rec.Count > 1 && rec.Caller == compartment && rec.Decision == "deny" &&
		slices.Contains(w.Kinds, rec.Script) && (w.Reason == "" || rec.Reason == w.Reason) && strings.HasPrefix(rec.Detail, w.Access)
}

// The audit kinds and reasons of the kernel layers (cmd/e2sgated/runtime.go
// for cgroup BPF; seccomp and Landlock as the supervisor reports them).
const (
	KindSeccomp     = "kernel/seccomp"
	KindLandlock    = "kernel/landlock"
	ReasonSyscall   = "kernel.syscall_denied"
	ReasonFS        = "kernel.fs_denied"
	ReasonNet       = "kernel.net_denied"
	ReasonConnect   = "kernel.connect_denied"
	ReasonSockCreat = "kernel.socket_denied"
)

// Seccomp is the record of a syscall the seccomp filter refused.
func Seccomp(syscall string) Want {
	return Want{Kinds: []string{KindSeccomp}, Reason: ReasonSyscall, Detail: syscall + "(", Access: syscall + "("}
}

// LandlockFS is the record of a file access Landlock refused on path
// (access as the kernel names it: "fs.read_file", "fs.read_dir",
// "fs.write_file", "fs.make_reg", "fs.remove_file").
func LandlockFS(access, path string) Want {
	return Want{Kinds: []string{KindLandlock}, Reason: ReasonFS, Detail: path, Access: access}
}

// SockCreate is the record of cgroup BPF refusing a socket of this family,
// type and protocol.
func SockCreate(family, typ, proto int) Want {
	return Want{Kinds: []string{"kernel/sock_create"}, Reason: ReasonSockCreat, Detail: fmt.Sprintf("family=%d type=%d protocol=%d ", family, typ, proto)}
}

// TCP are the records that may account for a refused TCP connect to addr:
// Landlock's TCP port rule, cgroup BPF's connect allowlist, or (no network
// at all) its socket-creation guard.
func TCP(addr string, family int) []Want {
	return []Want{
		{Kinds: []string{KindLandlock}, Reason: ReasonNet, Detail: portOf(addr), Access: "net.connect_tcp"},
		{Kinds: []string{"kernel/connect4", "kernel/connect6"}, Reason: ReasonConnect, Detail: addr},
		SockCreate(family, 1, 0), SockCreate(family, 1, 6),
	}
}

// UDP are the records that may account for a refused datagram to addr.
func UDP(addr string, family int) []Want {
	return []Want{
		{Kinds: []string{"kernel/sendmsg4", "kernel/sendmsg6", "kernel/connect4", "kernel/connect6"}, Reason: ReasonConnect, Detail: addr},
		SockCreate(family, 2, 0), SockCreate(family, 2, 17),
	}
}

func portOf(addr string) string {
	if i := strings.LastIndex(addr, ":"); i >= 0 {
		return addr[i+1:]
	}
	return addr
}
