# shellcheck shell=bash
# Simulated nodes: Node objects that kwok keeps Ready, with the status a
# kubelet would report (kernel, OS image, architecture, boot ID, capacity).

te_nodes_usage() {
	cat <<U
usage: testenv nodes add NAME [--kernel K] [--label k=v]... [--os-image S] [--arch A]
                            [--cpu N] [--memory Q] [--pods N] [--taint k=v:Effect]...
                            [--count N] [--no-wait]   (--count: NAME-1..NAME-N at once)
       testenv nodes remove NAME...
       testenv nodes reboot NAME [--kernel K] [--down-for S]
                                   Ready False, new bootID (and kernel), Ready True
       testenv nodes upgrade NAME --kernel K [--down-for S]
                                   a reboot into kernel K
       testenv nodes cordon|uncordon NAME
       testenv nodes notready|ready NAME         flip the Ready condition
       testenv nodes list
U
}

te_need_up() {
	[ -f "$TE_DIR/ports" ] && te_pid_alive kube-apiserver ||
		te_die "no running testenv in $TE_DIR; run '$TE_SRC/testenv up' first"
}

te_new_boot_id() { cat /proc/sys/kernel/random/uuid; }

te_nodes() {
	local sub=${1:-}
	[ $# -gt 0 ] && shift
	case $sub in
	add) te_need_up; te_node_add "$@" ;;
	remove | rm | delete) te_need_up; te_node_remove "$@" ;;
	reboot) te_need_up; te_node_reboot "$@" ;;
	upgrade) te_need_up; te_node_upgrade "$@" ;;
	cordon | uncordon) te_need_up; [ $# -ge 1 ] || te_die "nodes $sub: NAME missing"; te_kubectl "$sub" "$@" >/dev/null ;;
	notready) te_need_up; te_kubectl annotate --overwrite node "$1" kmm.testenv/node-ready=false >/dev/null; te_node_wait_ready "$1" False ;;
	ready) te_need_up; te_kubectl annotate node "$1" kmm.testenv/node-ready- >/dev/null; te_node_wait_ready "$1" True ;;
	list | ls) te_need_up; te_kubectl get nodes -o custom-columns='NODE:.metadata.name,READY:.status.conditions[?(@.type=="Ready")].status,KERNEL:.status.nodeInfo.kernelVersion,OS:.status.nodeInfo.osImage,ARCH:.status.nodeInfo.architecture,BOOT-ID:.status.nodeInfo.bootID,UNSCHEDULABLE:.spec.unschedulable' ;;
	-h | --help | help) te_nodes_usage ;;
	*) te_nodes_usage >&2; exit 2 ;;
	esac
}

# te_node_wait_ready NAME True|False
te_node_wait_ready() {
	local name=$1 want=$2 i got
	# Ready, and (when True) the node lifecycle controller has lifted its
	# not-ready taint, so that ordinary pods can be scheduled there.
	for i in $(seq 150); do
		got=$(te_kubectl get node "$name" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}/{.spec.taints[?(@.key=="node.kubernetes.io/not-ready")].effect}' 2>/dev/null || true)
		case $want/$got in
		True/True/ | False/False/*) return 0 ;;
		esac
		sleep 0.2
	done
	te_die "node $name: Ready/not-ready taint is '$got', wanted $want after 30 s (kwok log: $TE_DIR/logs/kwok.log)"
}

# The Node both ways of `nodes add` create, as a jq expression of $name, $boot,
# $machine, $uuid and the --arg/--argjson values of te_node_add.
TE_NODE_JQ='{
	apiVersion: "v1", kind: "Node",
	metadata: {
		name: $name,
		annotations: {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0",
			"kmm.testenv/simulated": "true"},
		labels: ({"kubernetes.io/hostname": $name, "kubernetes.io/os": "linux",
			"kubernetes.io/arch": $arch, "beta.kubernetes.io/os": "linux",
			"beta.kubernetes.io/arch": $arch, "type": "kwok"} + $labels)
	},
	spec: (if ($taints | length) > 0 then {taints: $taints} else {} end),
	status: {
		capacity: {cpu: $cpu, memory: $mem, pods: $pods, "ephemeral-storage": "100Gi"},
		allocatable: {cpu: $cpu, memory: $mem, pods: $pods, "ephemeral-storage": "100Gi"},
		addresses: [{type: "InternalIP", address: "127.0.0.1"}, {type: "Hostname", address: $name}],
		nodeInfo: {
			kernelVersion: $kernel, osImage: $os, architecture: $arch, operatingSystem: "linux",
			bootID: $boot, machineID: $machine, systemUUID: $uuid,
			containerRuntimeVersion: "testenv://simulated", kubeletVersion: $kubelet,
			kubeProxyVersion: ""
		}
	}
}'

te_node_add() {
	local name="" kernel=6.1.0-18-amd64 os="Debian GNU/Linux 12 (bookworm)" arch=amd64
	local cpu=8 memory=32Gi pods=110 wait=1 count=0 labels=() taints=()
	while [ $# -gt 0 ]; do
		case $1 in
		--kernel) kernel=$2; shift 2 ;;
		--label | -l) labels+=("$2"); shift 2 ;;
		--os-image) os=$2; shift 2 ;;
		--arch) arch=$2; shift 2 ;;
		--cpu) cpu=$2; shift 2 ;;
		--memory) memory=$2; shift 2 ;;
		--pods) pods=$2; shift 2 ;;
		--taint) taints+=("$2"); shift 2 ;;
		--count) count=$2; shift 2 ;;
		--no-wait) wait=0; shift ;;
		-*) te_die "nodes add: unknown option $1" ;;
		*) [ -z "$name" ] || te_die "nodes add: one NAME only (use --count N for NAME-1..NAME-N)"; name=$1; shift ;;
		esac
	done
	[ -n "$name" ] || { te_nodes_usage >&2; exit 2; }
	local names=() i
	if [ "$count" -gt 0 ] 2>/dev/null; then
		for i in $(seq "$count"); do names+=("$name-$i"); done
	else
		names=("$name")
	fi
	local l lj='{}' tj='[]' k v e
	for l in "${labels[@]}"; do
		case $l in *=*) ;; *) l="$l=" ;; esac
		lj=$(jq -c --arg k "${l%%=*}" --arg v "${l#*=}" '. + {($k): $v}' <<<"$lj")
	done
	for l in "${taints[@]}"; do
		e=${l##*:}; k=${l%:*}; v=""
		case $k in *=*) v=${k#*=}; k=${k%%=*} ;; esac
		tj=$(jq -c --arg k "$k" --arg v "$v" --arg e "$e" '. + [{key: $k, value: $v, effect: $e}]' <<<"$tj")
	done
	if [ ${#names[@]} -gt "$TE_BULK_NODES" ]; then
		te_node_add_bulk "$name" "$kernel" "$os" "$arch" "$cpu" "$memory" "$pods" "$lj" "$tj" "$wait" "${#names[@]}"
		return
	fi
	local n list="$TE_DIR/nodes-add.json"
	for n in "${names[@]}"; do
		jq -nc --arg name "$n" --arg kernel "$kernel" --arg os "$os" --arg arch "$arch" \
			--arg boot "$(te_new_boot_id)" --arg machine "$(te_new_boot_id | tr -d -)" \
			--arg uuid "$(te_new_boot_id)" --arg kubelet "$KUBE_VERSION" \
			--arg cpu "$cpu" --arg mem "$memory" --arg pods "$pods" \
			--argjson labels "$lj" --argjson taints "$tj" "$TE_NODE_JQ"
	done | jq -s '{apiVersion: "v1", kind: "List", items: .}' >"$list"
	te_kubectl create -f "$list" >/dev/null || te_die "nodes add: creating node(s) ${names[*]} failed"
	if [ $wait = 1 ]; then
		for n in "${names[@]}"; do te_node_wait_ready "$n" True; done
	fi
	if [ ${#names[@]} = 1 ]; then
		echo "node/$name added (kernel $kernel)"
	else
		echo "${#names[@]} nodes added: ${names[0]} .. ${names[-1]} (kernel $kernel)"
	fi
}

# Above this many nodes, `nodes add --count` builds every Node in one jq run,
# creates them from 4 kubectl processes and waits on one listing for all of
# them (10,000 nodes one jq, one create and one wait each took hours).
TE_BULK_NODES=100

# te_node_add_bulk NAME KERNEL OS ARCH CPU MEMORY PODS LABELS-JSON TAINTS-JSON WAIT COUNT
te_node_add_bulk() {
	local name=$1 kernel=$2 os=$3 arch=$4 cpu=$5 memory=$6 pods=$7 lj=$8 tj=$9 wait=${10} count=${11}
	local dir="$TE_DIR/nodes-add" i boot machine uuid
	rm -rf "$dir"
	mkdir -p "$dir"
	# Boot, machine and system IDs: `read` from the kernel's uuid file, no fork per node.
	for ((i = 1; i <= count; i++)); do
		read -r boot </proc/sys/kernel/random/uuid
		read -r machine </proc/sys/kernel/random/uuid
		read -r uuid </proc/sys/kernel/random/uuid
		printf '%s-%d\t%s\t%s\t%s\n' "$name" "$i" "$boot" "${machine//-/}" "$uuid"
	done | jq -R -c --arg kernel "$kernel" --arg os "$os" --arg arch "$arch" --arg kubelet "$KUBE_VERSION" \
		--arg cpu "$cpu" --arg mem "$memory" --arg pods "$pods" \
		--argjson labels "$lj" --argjson taints "$tj" 'split("\t") as [$name, $boot, $machine, $uuid] | '"$TE_NODE_JQ" >"$dir/nodes.jsonl" || te_die "nodes add: building the node list failed"
	# Four lists, created at once: kubectl creates the items of one list one at a time.
	split -n l/4 -d "$dir/nodes.jsonl" "$dir/part-"
	local part pids=() rc=0
	for part in "$dir"/part-*; do
		jq -s '{apiVersion: "v1", kind: "List", items: .}' "$part" >"$part.json"
		te_kubectl create -f "$part.json" >/dev/null &
		pids+=($!)
	done
	for i in "${pids[@]}"; do wait "$i" || rc=1; done
	[ $rc = 0 ] || te_die "nodes add: creating nodes $name-1 .. $name-$count failed"
	[ "$wait" = 0 ] || te_nodes_wait_ready_bulk "$name" "$count"
	echo "$count nodes added: $name-1 .. $name-$count (kernel $kernel)"
}

# te_nodes_wait_ready_bulk NAME COUNT: every NAME-i Ready and without the
# not-ready or unreachable taint (the node lifecycle controller's, when the
# simulator took longer than its grace period to report a new node Ready),
# read from one listing per poll instead of one GET per node.
te_nodes_wait_ready_bulk() {
	local name=$1 count=$2 limit=$((120 + $2 / 5)) t0=$SECONDS left
	while :; do
		left=$(te_kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status} {.spec.taints[?(@.key=="node.kubernetes.io/not-ready")].effect}{.spec.taints[?(@.key=="node.kubernetes.io/unreachable")].effect}{"\n"}{end}' 2>/dev/null |
			awk -v p="$name-" 'index($1, p) == 1 && substr($1, length(p) + 1) ~ /^[0-9]+$/ { n++; if ($2 == "True" && $3 == "") ok++ }
				END { print n - ok + 0, n + 0 }') || left="? ?"
		case $left in "0 $count") return 0 ;; esac
		[ $((SECONDS - t0)) -lt $limit ] ||
			te_die "nodes $name-1 .. $name-$count: not all Ready and untainted after $limit s (not ready, seen: $left; kwok log: $TE_DIR/logs/kwok.log)"
		sleep 5
	done
}

te_node_remove() {
	[ $# -ge 1 ] || te_die "nodes remove: NAME missing"
	local n
	for n in "$@"; do
		te_kubectl delete node "$n" --wait=true >/dev/null || te_die "nodes remove: deleting node $n failed"
		# A node that is gone takes its pods with it (the pod GC would do it later).
		te_kubectl delete pods -A --field-selector "spec.nodeName=$n" --grace-period=0 --force --wait=false >/dev/null 2>&1 || true
		echo "node/$n removed"
	done
}

te_node_patch_info() { # NAME JSON-nodeInfo-fragment
	te_kubectl patch node "$1" --subresource=status --type=merge \
		-p "{\"status\":{\"nodeInfo\":$2}}" >/dev/null || te_die "nodes: patching status of node $1 failed"
}

# A reboot as controllers see it: Ready goes False, the node comes back with
# a new bootID (and kernel, if given), Ready goes True again.
te_node_reboot() {
	local name="" kernel="" down=0
	while [ $# -gt 0 ]; do
		case $1 in
		--kernel) kernel=$2; shift 2 ;;
		--down-for) down=$2; shift 2 ;;
		-*) te_die "nodes reboot: unknown option $1" ;;
		*) name=$1; shift ;;
		esac
	done
	[ -n "$name" ] || te_die "nodes reboot: NAME missing"
	te_kubectl get node "$name" >/dev/null || te_die "nodes reboot: no node $name"
	local boot frag
	te_kubectl annotate --overwrite node "$name" kmm.testenv/node-ready=false >/dev/null
	te_node_wait_ready "$name" False
	[ "$down" = 0 ] || sleep "$down"
	boot=$(te_new_boot_id)
	frag=$(jq -nc --arg b "$boot" --arg k "$kernel" '{bootID: $b} + (if $k != "" then {kernelVersion: $k} else {} end)')
	te_node_patch_info "$name" "$frag"
	te_kubectl annotate node "$name" kmm.testenv/node-ready- >/dev/null
	te_node_wait_ready "$name" True
	echo "node/$name rebooted (bootID $boot${kernel:+, kernel $kernel})"
}

te_node_upgrade() {
	local name="" kernel="" down=0
	while [ $# -gt 0 ]; do
		case $1 in
		--kernel) kernel=$2; shift 2 ;;
		--down-for) down=$2; shift 2 ;;
		-*) te_die "nodes upgrade: unknown option $1" ;;
		*) name=$1; shift ;;
		esac
	done
	[ -n "$name" ] && [ -n "$kernel" ] || te_die "nodes upgrade: usage: nodes upgrade NAME --kernel K"
	te_node_reboot "$name" --kernel "$kernel" --down-for "$down" >/dev/null
	echo "node/$name upgraded to kernel $kernel (rebooted)"
}
