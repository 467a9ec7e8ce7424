# shellcheck shell=bash
# Processes of one run: started detached, pid recorded in $TE_DIR/pids,
# output in $TE_DIR/logs. Every command line names $TE_DIR, which lets
# `down` check that a recorded pid is still ours before signalling it.

# te_start NAME BINARY ARGS...
te_start() {
	local name=$1
	shift
	mkdir -p "$TE_DIR/pids" "$TE_DIR/logs"
	setsid "$@" >"$TE_DIR/logs/$name.log" 2>&1 </dev/null &
	echo $! >"$TE_DIR/pids/$name.pid"
}

# te_pid_alive NAME -> 0 if the recorded process runs and is ours.
te_pid_alive() {
	local f="$TE_DIR/pids/$1.pid" pid
	[ -f "$f" ] || return 1
	pid=$(cat "$f")
	[ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
	{ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -- "$TE_DIR/" || return 1
	# A zombie is not alive.
	[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]
}

# te_pid_running NAME -> 0 while the process we started runs (not a zombie).
# Unlike te_pid_alive it does not look at the command line: between fork and
# exec (a long while on a loaded machine) /proc/PID/cmdline still shows the
# forking shell's, or nothing, and the process is starting, not gone. Only
# for waiting right after te_start, when the pid cannot have been reused.
te_pid_running() {
	local f="$TE_DIR/pids/$1.pid" pid
	[ -f "$f" ] || return 1
	pid=$(cat "$f")
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
	[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]
}

te_components() {
	local f
	for f in "$TE_DIR"/pids/*.pid; do
		[ -e "$f" ] || continue
		basename "$f" .pid
	done
}

# te_stop NAME: SIGTERM, wait up to 15 s, then SIGKILL.
te_stop() {
	local name=$1 pid i
	if te_pid_alive "$name"; then
		pid=$(cat "$TE_DIR/pids/$name.pid")
		kill -TERM "$pid" 2>/dev/null || true
		for i in $(seq 150); do
			te_pid_alive "$name" || break
			sleep 0.1
		done
		if te_pid_alive "$name"; then
			te_info "$name (pid $pid) ignored SIGTERM for 15 s; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
			for i in $(seq 50); do
				te_pid_alive "$name" || break
				sleep 0.1
			done
		fi
	fi
	rm -f "$TE_DIR/pids/$name.pid"
}

# te_fail STEP LOGNAME MESSAGE: report a failed step with its log, then exit.
te_fail() {
	local step=$1 log="$TE_DIR/logs/$2.log" msg=$3
	printf 'testenv: error: up: step %s failed: %s\n' "'$step'" "$msg" >&2
	if [ -f "$log" ]; then
		printf 'testenv:   log: %s (last lines below)\n' "$log" >&2
		tail -n 8 "$log" | sed 's/^/testenv:   | /' >&2
	fi
	exit 1
}

# Stop every recorded process of this run, clients before servers.
te_stop_all() {
	local c
	for c in kwok kube-scheduler kube-controller-manager kube-apiserver etcd registry registry-tls; do
		te_stop "$c"
	done
	for c in $(te_components); do te_stop "$c"; done
}

# te_wait STEP NAME TIMEOUT_S DESCRIPTION CMD...
# Poll CMD until it succeeds; fail the step if NAME's process dies or time runs out.
te_wait() {
	local step=$1 name=$2 timeout=$3 desc=$4 deadline
	shift 4
	deadline=$((SECONDS + timeout))
	while ! "$@" >/dev/null 2>&1; do
		if [ -n "$name" ] && ! te_pid_running "$name"; then
			te_fail "$step" "$name" "$name exited while waiting for $desc"
		fi
		if [ $SECONDS -ge $deadline ]; then
			te_fail "$step" "$name" "timed out after ${timeout}s waiting for $desc"
		fi
		sleep 0.2
	done
}

# te_free_ports N: print N distinct free TCP ports on 127.0.0.1, below the
# ephemeral range so that outgoing connections never take them. Serialised
# by a lock so that two runs starting together do not draw the same ports.
te_free_ports() {
	local n=$1 used port out=() tries=0
	used=$(ss -Htln 2>/dev/null | awk '{print $4}' | sed 's/.*://' | sort -u)
	while [ ${#out[@]} -lt "$n" ]; do
		tries=$((tries + 1))
		[ $tries -lt 1000 ] || te_die "no free ports found"
		port=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
		grep -qx "$port" <<<"$used" && continue
		case " ${out[*]} " in *" $port "*) continue ;; esac
		# Ports reserved by other live runs (they may not listen yet).
		if grep -qsx "$port" /tmp/kmm-testenv-ports/*.ports 2>/dev/null; then continue; fi
		out+=("$port")
	done
	echo "${out[@]}"
}
