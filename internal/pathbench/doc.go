// Package pathbench holds BenchmarkGatePath, the profiling rig of `make
// profile`: the full path's code (web front, gate agent, purchasing) wired
// in one process over the same unix-socket gRPC hops, so CPU and
// allocation profiles can be taken and split by part. It is kept out of
// package gateagent so that the gate agent's own tests (which install its
// seccomp filter in a child) do not link the compartments.
package pathbench
