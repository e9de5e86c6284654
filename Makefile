# ztunnel-go. `make run` builds and starts ztunnel on the bundled example config;
# `make test` runs the whole suite (root-only end-to-end tests skip loudly when not root).

GO        ?= go
BIN       := bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.0.0-dev)
REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -s -w -X github.com/ztunnel-go/ztunnel/version.Version=$(VERSION) \
             -X github.com/ztunnel-go/ztunnel/version.GitRevision=$(REVISION) \
             -X github.com/ztunnel-go/ztunnel/version.BuildStatus=Clean
TEST_TIMEOUT ?= 12m
# Fuzzing: `make fuzz` runs every Fuzz target for FUZZTIME; CI (`make test`) for FUZZTIME_CI.
FUZZTIME    ?= 10s
FUZZTIME_CI ?= 2s

.PHONY: all build run test vet bench bench-go fuzz fuzz-ci race clean proto demo

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ztunnel ./cmd/ztunnel

# Dedicated mode on loopback: a static mesh from examples/local.yaml, certificates from a CA
# generated at start, SOCKS5 on 127.0.0.1:15080 to send traffic through without iptables.
run: build
	PROXY_MODE=dedicated PROXY_WORKLOAD_INFO=default/app/app \
	XDS_ADDRESS= CA_ADDRESS= FAKE_CA=true LOCAL_XDS_PATH=examples/local.yaml \
	UNSTABLE_ENABLE_SOCKS5=true \
	$(BIN)/ztunnel proxy ztunnel

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }

# The whole suite: vet; unit and end-to-end tests (e2e needs root) under the race detector; every
# benchmark once so none of them rots; the deploy module; every fuzz target for FUZZTIME_CI.
test: vet
	$(MAKE) --no-print-directory race
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) $(RAW_PKGS)
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 1x ./...
	cd deploy && $(GO) vet ./... && $(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...
	$(MAKE) --no-print-directory fuzz-ci

# The packages whose system calls are raw only without the race detector (internal/rawio's
# race.go): make test runs their tests without it too.
RAW_PKGS = ./internal/rawio ./netutil ./tls/record

# The whole suite under the race detector (unit, end-to-end in network namespaces when root).
race:
	$(GO) test -count=1 -race -timeout $(TEST_TIMEOUT) ./...

# Every Fuzz target of the module, one after the other; stops at the first crasher and prints
# its path under <package>/testdata/fuzz/ (keep it there as a regression case).
fuzz:
	FUZZTIME=$(FUZZTIME) GO=$(GO) fuzz/run.sh

fuzz-ci:
	FUZZTIME=$(FUZZTIME_CI) GO=$(GO) fuzz/run.sh

# The container image, built without a container engine or registry (deploy/cmd/mkimage): an OCI
# image layout in bin/image and a `docker load` tarball bin/ztunnel-image.tar. The CA bundle is
# there for XDS_ROOT_CA/CA_ROOT_CA=SYSTEM; CA_CERTS= leaves it out.
IMAGE    ?= ghcr.io/ztunnel-go/ztunnel:$(VERSION)
CA_CERTS ?= $(wildcard /etc/ssl/certs/ca-certificates.crt)
.PHONY: image
image: build
	cd deploy && $(GO) run ./cmd/mkimage -binary ../$(BIN)/ztunnel -ca-certs '$(CA_CERTS)' \
		-version '$(VERSION)' -revision '$(REVISION)' -ref '$(IMAGE)' \
		-oci ../$(BIN)/image -tar ../$(BIN)/ztunnel-image.tar

# The standalone perf harness (root): namespaces, two ztunnels, a Go TLS relay pair and HAProxy,
# every scenario over every path side by side; see benchmarks/README.md. BENCH_FLAGS e.g.
# `-quick`, `-duration 5s -reps 3`, `-markdown`, `-json`.
BENCH_FLAGS ?=
bench: build
	$(GO) run ./cmd/ztunnel-bench -ztunnel $(BIN)/ztunnel $(BENCH_FLAGS)

# The Go benchmarks (testing.B) of every package.
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# Regenerate the protobuf Go code (committed); CI checks it is up to date.
proto:
	hack/gen-proto.sh

# A one-machine ambient lab (root): namespaces, istio-cni redirection, a fake istio-cni over ZDS,
# ztunnel in shared mode, traffic, a deny policy; everything is torn down at the end.
demo: build
	$(GO) run ./cmd/ambient-demo -ztunnel $(BIN)/ztunnel

clean:
	rm -rf $(BIN)
