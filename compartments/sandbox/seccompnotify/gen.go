package seccompnotify

//go:generate go run gen_syscalls.go
