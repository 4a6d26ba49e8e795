# e2sgate — the entry point people read. `make run` installs what is
# missing, builds and starts the appliance on its embedded defaults;
# `make test` runs every test (privileged ones included: run as root).

GO      ?= go
BIN     := bin
CONFIG  ?=
# every program under cmd/ (each compartment has one, see compartments/builtins); e2s needs cgo
PROGRAMS := $(filter-out e2s,$(notdir $(wildcard cmd/*)))
# runc is built from the module go.mod pins (tool directive), with cgo and
# libseccomp, as runc's own `make static` does: static-pie, so the VM image
# needs no libseccomp; no libpathrs (a Rust library Debian lacks).
RUNC_TAGS    := seccomp urfave_cli_no_docs netgo osusergo
RUNC_LDFLAGS := -s -w -linkmode external -extldflags -static-pie

.PHONY: all build run test bench profile generate check-generate lint images deps run-deps clean

all: build

deps: ## install the Debian packages and Go modules the build and tests need
	@./.ci/deps

run-deps: ## install only what running the appliance needs
	@./.ci/deps run

build: ## build every program into bin/ (appliance programs static; e2s with cgo for PKCS#11; the pinned runc)
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ $(addprefix ./cmd/,$(PROGRAMS))
	$(GO) build -trimpath -o $(BIN)/ ./cmd/e2s
	CGO_ENABLED=1 $(GO) build -trimpath -buildmode=pie -tags '$(RUNC_TAGS)' -ldflags '$(RUNC_LDFLAGS)' -o $(BIN)/runc github.com/opencontainers/runc

run: run-deps build ## start the appliance on its embedded defaults (or CONFIG=file)
	$(BIN)/e2sgated $(if $(CONFIG),-config $(CONFIG))

test: deps build ## every test (installs what they need first): unit, Rego, end-to-end, privileged
	$(GO) vet ./...
	E2SGATE_TEST_STRICT=1 $(GO) test -count=1 -timeout 20m ./...

bench: deps build ## benchmarks, each against its baseline in the same run; last, one table of the gate path's figures (issue 9)
	$(GO) test -run '^$$' -bench VersusOpenSSL -benchtime 5x ./internal/document/cms/
	$(GO) test -run '^$$' -bench . -benchtime 15x ./compartments/sandbox/  # E2S_RUNC_BASELINE=/usr/sbin/runc: pinned runc vs that one
	@./.ci/bench

profile: ## CPU and allocation pprof of outside, gate agent and purchasing under load, summary in bin/artifacts/profile.txt
	@./.ci/profile $(BIN)/artifacts

generate: ## regenerate protobuf (protoc) and bpf2go (clang) output; both are committed
	$(GO) generate ./...

check-generate: ## fail if the committed protobuf and bpf2go output is not current (CI; no npm)
	E2S_NO_NPM=1 $(GO) generate ./...
	git diff --exit-code -- '*.pb.go' '*_bpfel.go' '*_bpfel.o'

lint: ## gofmt, go vet, and no link in the docs or comments to a file the repository does not have
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...
	$(GO) run ./internal/tools/doclinks

fuzz: ## every fuzz target (listed by go test -list 'Fuzz.*') for FUZZTIME each (default 60s); a crasher stays in its package's testdata/fuzz
	@set -e; for d in $$(git grep -l '^func Fuzz' -- '*_test.go' | xargs -n1 dirname | sort -u); do \
	  for t in $$($(GO) test -list 'Fuzz.*' ./$$d | grep '^Fuzz'); do \
	    echo "== ./$$d $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(or $(FUZZTIME),60s) ./$$d; \
	  done; \
	done

images: build ## per-compartment minimal root filesystems under bin/images
	$(GO) run ./images/cmd/mkimage -out $(BIN)/images

clean: ## remove build output
	rm -rf $(BIN)

.PHONY: image vm-test

image: build ## the appliance as a hardened VM disk image, bin/e2sgate.img (as root, from Debian packages; see images/vm/build.sh)
	images/vm/build.sh $(BIN) $(BIN)/e2sgate.img

vm-test: image ## boot bin/e2sgate.img under QEMU (KVM where /dev/kvm exists) and test it from the host (loopback ports only)
	E2SGATE_VM_IMAGE=$(abspath $(BIN)/e2sgate.img) $(GO) test -count=1 -v -timeout 40m ./images/vm/

# make vm-test is not yet part of make test: it has passed here only under
# software emulation (this machine has no /dev/kvm); run it by hand.
