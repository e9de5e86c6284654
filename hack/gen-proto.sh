#!/usr/bin/env bash
# Regenerates the Go code of every .proto under proto/ (wire-compatible copies of istiod's and
# istio-cni's messages). Each file's go_package names where its code goes. Needs protoc (Debian's
# protobuf-compiler, which also ships the well-known types); protoc-gen-go is the go.mod tool.
set -euo pipefail
cd "$(dirname "$0")/.."
plugin=$(go tool -n protoc-gen-go)
mapfile -t files < <(find proto -name '*.proto' | sort)
[ ${#files[@]} -gt 0 ] || exit 0
protoc -I proto -I /usr/include \
  --plugin=protoc-gen-go="$plugin" \
  --go_out=. --go_opt=module=github.com/ztunnel-go/ztunnel \
  "${files[@]}"
