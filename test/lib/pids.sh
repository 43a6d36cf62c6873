# Pid bookkeeping shared by the shell test libraries (bash; sourced): each
# test keeps the pids it started in PIDS, and its cleanup ends exactly those.

# forget_pid PID: PID was reaped; never signal it again.
forget_pid() {
	local p keep=()
	for p in "${PIDS[@]}"; do
		[ "$p" = "$1" ] || keep+=("$p")
	done
	PIDS=("${keep[@]}")
}
