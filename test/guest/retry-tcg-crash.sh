#!/bin/bash
# Runs a live-migration guest test, and runs it once more only when the first
# run failed because a guest *kernel* died after a switch-over (list
# corruption, a smashed stack, an oops).  QEMU 7.2's TCG now and then loses a
# guest CPU's own writes across a migration; the same crash was measured with
# qemu-storage-daemon as the back end (docs/migration.md, "Known problems").
# Anything else — an I/O error, a verify failure, a broken VDEV, a sanitizer
# report, a timeout — fails at once.  The retry is announced on stderr, so it
# shows in the test log.
#   retry-tcg-crash.sh SCRIPT ARGS...
set -u
here=$(dirname "$0")
script=$1
shift
crash='list_(del|add) corruption|stack-protector: Kernel stack is corrupted|Kernel panic - not syncing|general protection fault|BUG: unable to handle|invalid opcode:'
ours='SIOV-TEST-FAIL|ERROR: AddressSanitizer|runtime error:|fio round [0-9]* failed|reported an error|VDEV broken|I/O errors:|sanitizer report'
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for attempt in 1 2; do
	"$here/$script" "$@" 2>"$out"
	rc=$?
	cat "$out" >&2
	[ $rc = 0 ] || [ $rc = 77 ] && exit $rc
	[ $attempt = 1 ] || exit $rc
	if grep -Eq "$crash" "$out" && ! grep -Eq "$ours" "$out"; then
		echo "retry-tcg-crash: a guest kernel crashed after a migration (QEMU TCG, not a siovd error); running $script once more" >&2
		continue
	fi
	exit $rc
done
