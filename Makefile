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

run: run-deps build ## start the appliance on its embedded defaults (or CONFIG=file); first time: bin/e2sgated accounts init NAME=ROLE ... (it says so)
	$(BIN)/e2sgated $(if $(CONFIG),-config $(CONFIG))

# make test boots the VM image too (images/vm), reusing what make image built
# (a warm build when the tree changed): the tampered-root, tampered-kernel-image,
# and unseeded boots always; the rollback and the full boot with the appliance serving
# across the update (TestVM) only where /dev/kvm exists, since software
# emulation takes 15-30 min for it (make vm-test runs it anywhere).
VM_TEST_IMAGES := image-next

test: deps build $(VM_TEST_IMAGES) ## every test (installs what they need first): unit, Rego, end-to-end, privileged, the VM image
	$(GO) vet ./...
	E2SGATE_TEST_STRICT=1 E2SGATE_VM_IMAGE=$(abspath $(BIN)/e2sgate.img) \
	  E2SGATE_VM_NEXT=$(abspath $(BIN)/e2sgate-next.img) $(GO) test -count=1 -timeout 25m ./...

bench: deps build ## benchmarks, each against its baseline in the same run; last, one table of the gate path's figures (issue 9)
	$(GO) test -run '^$$' -bench VersusOpenSSL -benchtime 5x ./internal/document/cms/
	$(GO) test -run '^$$' -bench . -benchtime 15x ./compartments/sandbox/  # E2S_RUNC_BASELINE=/usr/sbin/runc: pinned runc vs that one
	$(GO) test -run '^$$' -bench Denial -benchtime 1000x ./compartments/sandbox/seccompnotify/  # a seccomp denial answered by the supervisor vs failed in the kernel
	$(MAKE) bench-documents
	@./.ci/bench

profile: ## CPU and allocation pprof of outside, gate agent and purchasing under load, summary in bin/artifacts/profile.txt
	@./.ci/profile $(BIN)/artifacts

.PHONY: bench-documents

DOC_SIZES ?= 100M,1G

bench-documents: build ## e2s protect/open of 100 MiB and 1 GiB (DOC_SIZES) against openssl cms -stream in the same run: time ratios and peak RSS (table in bin/artifacts/bench-documents.md)
	$(GO) run ./internal/tools/benchdocs -e2s $(BIN)/e2s -sizes $(DOC_SIZES) -out $(BIN)/artifacts/bench-documents.md

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

.PHONY: image image-next vm-test vagrant-box

image: build ## the appliance as a hardened VM disk image, bin/e2sgate.img (as root, from Debian packages; IMAGE_VERSION, SB_KEY/SB_CERT: see images/vm/build.sh)
	images/vm/build.sh $(BIN) $(BIN)/e2sgate.img

image-next: image ## the same tree as a newer version, bin/e2sgate-next.img: the update vm-test applies
	IMAGE_VERSION=$$(cat $(BIN)/e2sgate.img.version).1 images/vm/build.sh $(BIN) $(BIN)/e2sgate-next.img

vm-test: image-next ## boot bin/e2sgate.img under QEMU (KVM where /dev/kvm exists), Secure Boot on, test it from the host (loopback ports only), update it, roll back a bad update
	E2SGATE_TEST_STRICT=1 E2SGATE_VM_FULL=1 E2SGATE_VM_IMAGE=$(abspath $(BIN)/e2sgate.img) \
	  E2SGATE_VM_NEXT=$(abspath $(BIN)/e2sgate-next.img) $(GO) test -count=1 -v -timeout 60m ./images/vm/

vagrant-box: image ## bin/e2sgate.box: the image as a libvirt Vagrant box (vagrant/README.md)
	vagrant/mkbox.sh $(BIN)/e2sgate.img $(BIN)/e2sgate.box
