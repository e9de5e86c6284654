#!/usr/bin/env bash
# Fuzzes every `func Fuzz...` target of the main module, one at a time (go
# allows one -fuzz target per invocation), for FUZZTIME each. Stops at the
# first failure and prints where go test wrote the crasher.
#
#   FUZZTIME  time per target (default 10s), any -fuzztime value (10s, 500x)
#   FUZZPKGS  packages to search (default ./...)
#   FUZZSKIP  extended regexp of target names to leave out (default none)
#   FUZZMINIMIZE  -fuzzminimizetime: how long a worker may shrink one input it
#             found (default 3s; go's own default is 60s). The same bound holds
#             for a crasher, which is written as far as it was shrunk. A worker
#             that shrinks does not fuzz, and the slow targets find several new
#             inputs a second at first: with go's 60s, FuzzServerConn spent
#             most of a 20s run shrinking (fuzz/doc.go).
#   GO        the go command (default go)
#   FUZZ_TOOLCHAIN  the Go toolchain to fuzz with (default go1.27.1, fetched by
#             the go command through the module proxy; empty: the go command's
#             own). Go 1.26's fuzz coordinator can fail a target at the end of
#             -fuzztime with no failing input (golang/go#75804, fixed in 1.27).
#             If the toolchain cannot be had, the run goes on with the go
#             command's own, and such a failure is retried (see below).
set -uo pipefail

FUZZTIME=${FUZZTIME:-10s}
FUZZPKGS=${FUZZPKGS:-./...}
FUZZSKIP=${FUZZSKIP:-}
FUZZMINIMIZE=${FUZZMINIMIZE:-3s}
GO=${GO:-go}
FUZZ_TOOLCHAIN=${FUZZ_TOOLCHAIN-go1.27.1}
cd "$(dirname "$0")/.." || exit 1

if [ -n "$FUZZ_TOOLCHAIN" ]; then
	if v=$(GOTOOLCHAIN=$FUZZ_TOOLCHAIN $GO version 2>&1); then
		export GOTOOLCHAIN=$FUZZ_TOOLCHAIN
		echo "fuzz: with $v"
	else
		printf '%s\n' "$v"
		echo "fuzz: could not get $FUZZ_TOOLCHAIN; fuzzing with $($GO version 2>&1)"
	fi
fi

# `go test -list` prints each package's matching names, then its "ok" line.
if ! list=$($GO test -list '^Fuzz' $FUZZPKGS 2>&1); then
	printf '%s\n' "$list"
	echo "fuzz: listing the targets failed (does every package build?)" >&2
	exit 1
fi
targets=()
pending=()
while IFS= read -r line; do
	case "$line" in
	Fuzz*)
		if [ -n "$FUZZSKIP" ] && grep -Eq -- "$FUZZSKIP" <<<"$line"; then
			echo "fuzz: skipping $line (FUZZSKIP)"
		else
			pending+=("$line")
		fi
		;;
	ok*)
		pkg=$(awk '{print $2}' <<<"$line")
		for name in ${pending[@]+"${pending[@]}"}; do
			targets+=("$pkg $name")
		done
		pending=()
		;;
	esac
done <<<"$list"
if [ ${#targets[@]} -eq 0 ]; then
	echo "fuzz: no Fuzz targets found in $FUZZPKGS" >&2
	exit 1
fi

echo "fuzz: ${#targets[@]} targets, $FUZZTIME each (inputs shrunk for at most $FUZZMINIMIZE)"
start=$SECONDS
i=0
for t in "${targets[@]}"; do
	i=$((i + 1))
	read -r pkg name <<<"$t"
	printf 'fuzz: [%d/%d] %s %s\n' "$i" "${#targets[@]}" "$pkg" "$name"
	out=$($GO test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINIMIZE" "$pkg" 2>&1)
	rc=$?
	# Go 1.26's fuzz coordinator (when FUZZ_TOOLCHAIN could not be had) can fail at the end of
	# -fuzztime with "context deadline exceeded": its own deadline escapes the check meant to
	# treat it as a normal stop (golang/go#75804, fixed in Go 1.27). No input failed and no
	# crasher is written. Run such a target again, at most twice (CI met it twice in a row on a
	# loaded host); a real failure always names its crasher (or a failing seed) and is never
	# retried.
	for retry in 1 2; do
		if [ $rc -eq 0 ] || ! grep -q 'context deadline exceeded' <<<"$out" || grep -q 'testdata/fuzz/' <<<"$out"; then
			break
		fi
		echo "fuzz: $name stopped with the fuzz coordinator's deadline error (no failing input); running it again ($retry of 2)"
		out=$($GO test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINIMIZE" "$pkg" 2>&1)
		rc=$?
	done
	if [ $rc -ne 0 ]; then
		printf '%s\n' "$out"
		dir=$($GO list -f '{{.Dir}}' "$pkg")
		crasher=$(grep -o "testdata/fuzz/${name}/[0-9a-f]*" <<<"$out" | head -1)
		echo
		if [ -n "$crasher" ]; then
			echo "fuzz: CRASH in $pkg $name"
			echo "fuzz: crasher written to ${dir#$PWD/}/$crasher"
			echo "fuzz: reproduce with: $GO test -run '^${name}/$(basename "$crasher")\$' $pkg"
			echo "fuzz: keep the file as a regression case once the bug is fixed"
		else
			echo "fuzz: $pkg $name failed without a crasher (build error, or a failing seed)"
		fi
		exit 1
	fi
done
echo "fuzz: all ${#targets[@]} targets passed in $((SECONDS - start))s"
