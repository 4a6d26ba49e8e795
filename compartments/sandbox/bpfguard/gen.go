package bpfguard

// Regenerate the committed objects (needs clang, llvm-strip and libbpf-dev):
//
//	go generate ./compartments/bpfguard/...
//
//go:generate go tool bpf2go -target bpfel -type event guard guard.c -- -O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu
//go:generate go tool bpf2go -target bpfel lsmprobe lsmprobe.c -- -O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu
//go:generate go tool bpf2go -target bpfel -type lsm_event -type file_key lsm lsm.c -- -O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu
