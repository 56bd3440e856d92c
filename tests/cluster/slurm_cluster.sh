#!/usr/bin/env bash
# A real Slurm (Debian's slurmctld/slurmd + munge) for the cluster tests, run as root, no systemd: one node,
# or CAIG_SLURM_NODES=N (2..8) nodes, each its own host in its own network, UTS and mount namespace.
#
#   slurm_cluster.sh up DIR       install packages if missing, write config under DIR, start daemons, wait idle
#   slurm_cluster.sh status DIR   daemons' PIDs and sinfo
#   slurm_cluster.sh down DIR     cancel this cluster's jobs, stop daemons by PID, restore /etc/slurm
#                                 (N nodes: end their namespaces, delete the bridge)
#
# Everything lives in DIR (config, state, spool, logs, PID files, munge key and socket, fake GPU devices)
# except, for one node, /etc/slurm/slurm.conf and gres.conf: Snakemake's jobstep strips SLURM_CONF before
# calling srun inside a job, so srun must find the config at Slurm's default path. Files found there before
# `up` are kept in DIR/etc-backup and put back by `down`.
#
# The node claims more than the machine has (SlurmdParameters=config_overrides): by default 64 CPUs,
# 512000 MB and 8 GPUs (gres gpu:a100:8, character devices made with mknod), the shape of one 8xA100 node,
# so jobs sized for the real cluster schedule here. Limits are scheduling-only (no cgroups).
# Partitions: CAIG_SLURM_CPU_PARTITION (default testcpu, the default partition) and
# CAIG_SLURM_GPU_PARTITION (default testgpu), both on every node.
#
# With N > 1 nodes, node caig-nK runs its slurmd (and so its jobs) in namespaces of its own: hostname caig-nK,
# address $SUBNET.K on a veth pair whose host end joins a bridge ($BRIDGE, $SUBNET.254, where slurmctld is
# reached), and private mounts of DIR/net/hosts on /etc/hosts (every node's name, so the launcher's
# rendezvous and gloo resolve each rank's host to an address the other nodes reach), DIR/net/resolv.conf
# on /etc/resolv.conf and DIR/etc on /etc/slurm (srun inside a job finds this cluster's config). Nothing on
# the host's /etc changes, so such a cluster can run beside a one-node one given other ports: host-side
# clients read SLURM_CONF=DIR/etc/slurm.conf.
# Spool, PID and log files are per node (%n). `down` stops the slurmds, ends the namespaces (their veths go
# with them) and deletes the bridge.
#
# Exit status: 0 ok, 77 cannot run here (not root, no apt, packages unavailable), anything else an error.
set -euo pipefail

SKIP=77
CPUS=${CAIG_SLURM_CPUS:-64}
MEM_MB=${CAIG_SLURM_MEM_MB:-512000}
GPUS=${CAIG_SLURM_GPUS:-8}
GPU_TYPE=${CAIG_SLURM_GPU_TYPE:-a100}
CPU_PARTITION=${CAIG_SLURM_CPU_PARTITION:-testcpu}
GPU_PARTITION=${CAIG_SLURM_GPU_PARTITION:-testgpu}
CTLD_PORT=${CAIG_SLURM_CTLD_PORT:-6817}
SLURMD_PORT=${CAIG_SLURM_SLURMD_PORT:-6818}
MIN_JOB_AGE=${CAIG_SLURM_MIN_JOB_AGE:-3600}
IDLE_TIMEOUT=${CAIG_SLURM_IDLE_TIMEOUT:-60}
NODES=${CAIG_SLURM_NODES:-1}
SUBNET=10.77.0
BRIDGE=caig-br0
NODE_PREFIX=caig-n
MARKER="# written by caig tests/cluster/slurm_cluster.sh"
ETC=/etc/slurm

die() { echo "slurm_cluster: $*" >&2; exit 1; }
skip() { echo "slurm_cluster: skip: $*" >&2; exit $SKIP; }

usage() { die "usage: $0 up|down|status DIR"; }

[ $# -eq 2 ] || usage
ACTION=$1
mkdir -p "$2"
DIR=$(cd "$2" && pwd)
CONF=$DIR/etc/slurm.conf
MUNGE_SOCKET=$DIR/munge/munge.socket.2
export SLURM_CONF=$CONF # this script's own sinfo/squeue/scancel talk to this cluster, whatever /etc holds
case $NODES in [1-8]) ;; *) die "CAIG_SLURM_NODES must be 1..8, got '$NODES'" ;; esac

recorded_nodes() { # the nodes a multi-node `up` recorded in DIR, one a line; none for a one-node cluster
  if [ -s "$DIR/run/nodes" ]; then cat "$DIR/run/nodes"; fi
}

daemons() { # the cluster's processes in stop order (started in reverse)
  local node
  if [ -z "$(recorded_nodes)" ]; then echo slurmd; fi
  for node in $(recorded_nodes); do echo "slurmd-$node"; done
  for node in $(recorded_nodes); do echo "ns-$node"; done # the process holding the node's namespaces
  echo slurmctld
  echo munged
}

pid_of() { # PID recorded for a daemon, or nothing
  local file=$DIR/run/$1.pid
  [ -s "$file" ] && tr -d '[:space:]' <"$file" || true
}

alive() { # a PID is alive unless it is gone or a zombie (PID 1 here may reap orphans late)
  local pid=$1 state
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  state=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

gone() { ! alive "$1"; }

install_packages() {
  local missing=()
  command -v slurmctld >/dev/null || missing+=(slurmctld)
  command -v slurmd >/dev/null || missing+=(slurmd)
  command -v sinfo >/dev/null || missing+=(slurm-client)
  command -v munged >/dev/null || missing+=(munge)
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || skip "Slurm packages missing (${missing[*]}) and not root to install them"
  command -v apt-get >/dev/null || skip "Slurm packages missing (${missing[*]}) and no apt-get"
  echo "slurm_cluster: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d 101: the packages' maintainer scripts must not try to start services (there is no init).
  local policy=/usr/sbin/policy-rc.d wrote_policy=0
  if [ ! -e $policy ]; then printf '#!/bin/sh\nexit 101\n' >$policy && chmod 755 $policy && wrote_policy=1; fi
  local rc=0
  { timeout 300 apt-get update -qq && timeout 600 apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
    >"$DIR/apt.log" 2>&1 || rc=$?
  [ $wrote_policy -eq 1 ] && rm -f $policy
  [ $rc -eq 0 ] || skip "apt-get could not install ${missing[*]} (exit $rc; see $DIR/apt.log)"
}

write_config() {
  local host
  host=$(uname -n)
  host=${host%%.*}
  mkdir -p "$DIR"/{etc,state,spool,log,run,munge,dev,etc-backup}
  chmod 755 "$DIR" "$DIR/munge"
  local i
  for ((i = 0; i < GPUS; i++)); do
    [ -c "$DIR/dev/gpu$i" ] || mknod "$DIR/dev/gpu$i" c 1 3 # same numbers as /dev/null: harmless to open
  done
  # One node: the host itself at 127.0.0.1. N nodes: caig-n1..N at $SUBNET.1..N, slurmctld on the bridge.
  local shape="CPUs=$CPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$CPUS ThreadsPerCore=1 RealMemory=$MEM_MB"
  shape+=" Gres=gpu:$GPU_TYPE:$GPUS State=UNKNOWN"
  local ctld_addr=127.0.0.1 nodes=$host spool=$DIR/spool
  local pidfile=$DIR/run/slurmd.pid logfile=$DIR/log/slurmd.log
  local node_lines="NodeName=$host NodeAddr=127.0.0.1 $shape"
  rm -f "$DIR/run/nodes"
  if [ "$NODES" -gt 1 ]; then
    mkdir -p "$DIR/run"
    for ((i = 1; i <= NODES; i++)); do echo "$NODE_PREFIX$i"; done >"$DIR/run/nodes"
    ctld_addr=$SUBNET.254 nodes="$NODE_PREFIX[1-$NODES]" node_lines=""
    spool="$DIR/spool/%n" pidfile="$DIR/run/slurmd-%n.pid" logfile="$DIR/log/slurmd-%n.log"
    mkdir -p "$DIR/net"
    printf '127.0.0.1 localhost\n%s %s\n' "$SUBNET.254" "$host" >"$DIR/net/hosts"
    # No name server is reachable from a node's network: one on its own loopback fails at once, where the
    # host's would time out each lookup (c10d's reverse lookup of a peer took 10 s).
    echo "nameserver 127.0.0.1" >"$DIR/net/resolv.conf"
    for ((i = 1; i <= NODES; i++)); do
      node_lines+="${node_lines:+$'\n'}NodeName=$NODE_PREFIX$i NodeHostname=$NODE_PREFIX$i"
      node_lines+=" NodeAddr=$SUBNET.$i $shape"
      echo "$SUBNET.$i $NODE_PREFIX$i" >>"$DIR/net/hosts"
      mkdir -p "$DIR/spool/$NODE_PREFIX$i"
    done
  fi
  cat >"$CONF" <<EOF
$MARKER for $DIR
ClusterName=caigtest
SlurmctldHost=$host($ctld_addr)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$pidfile
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$logfile
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=$MIN_JOB_AGE
MpiDefault=none
GresTypes=gpu
SchedulerType=sched/backfill
$node_lines
PartitionName=$CPU_PARTITION Nodes=$nodes Default=YES MaxTime=INFINITE State=UP
PartitionName=$GPU_PARTITION Nodes=$nodes MaxTime=INFINITE State=UP
EOF
  {
    echo "$MARKER for $DIR"
    echo "AutoDetect=off"
    [ "$GPUS" -gt 0 ] && echo "NodeName=$nodes Name=gpu Type=$GPU_TYPE File=$DIR/dev/gpu[0-$((GPUS - 1))]"
  } >"$DIR/etc/gres.conf"
  [ -s "$DIR/munge/munge.key" ] || {
    dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$DIR/munge/munge.key"
  }
}

install_etc() { # copy the config to /etc/slurm, keeping whatever was there (unless it is ours) in DIR/etc-backup
  mkdir -p "$ETC"
  local name
  for name in slurm.conf gres.conf; do
    if [ -e "$ETC/$name" ] && ! grep -qF "$MARKER" "$ETC/$name" && [ ! -e "$DIR/etc-backup/$name" ]; then
      cp -a "$ETC/$name" "$DIR/etc-backup/$name"
    fi
    cp "$DIR/etc/$name" "$ETC/$name"
  done
}

restore_etc() { # remove our copies from /etc/slurm and put back what was there before
  local name
  for name in slurm.conf gres.conf; do
    if [ -e "$ETC/$name" ] && grep -qF "$MARKER for $DIR" "$ETC/$name"; then
      rm -f "$ETC/$name"
    fi
    if [ -e "$DIR/etc-backup/$name" ]; then
      mv "$DIR/etc-backup/$name" "$ETC/$name"
    fi
  done
  rmdir "$ETC" 2>/dev/null || true
}

wait_for() { # wait_for SECONDS COMMAND...: poll until the command succeeds
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.2
  done
}

nodes_idle() { # every node idle; fails fast (exit) if a daemon died, e.g. on a fatal config error
  local d states
  for d in $(daemons); do alive "$(pid_of "$d")" || die "$d exited; see $DIR/log/$d.log"; done
  states=$(timeout 5 sinfo -h -N -p "$CPU_PARTITION" -o '%T' 2>/dev/null) || return 1
  [ "$(grep -cx idle <<<"$states")" -eq "$NODES" ]
}

preflight() { # refuse before touching anything when this or another cluster is running
  local d port owner ports=("$CTLD_PORT" "$SLURMD_PORT") err
  for d in $(daemons); do
    if alive "$(pid_of "$d")"; then die "$d already running (PID $(pid_of "$d")); run '$0 down $DIR' first"; fi
  done
  if [ "$NODES" -gt 1 ]; then
    ports=("$CTLD_PORT") # the slurmds listen in their own network namespaces
    for d in unshare nsenter ip; do
      command -v $d >/dev/null || skip "$NODES nodes need '$d' (util-linux, iproute2)"
    done
    err=$(unshare --net --uts --mount true 2>&1) || skip "$NODES nodes need network namespaces: unshare: $err"
    if ip link show "$BRIDGE" >/dev/null 2>&1; then
      die "bridge $BRIDGE exists: another multi-node test cluster is up (run '$0 down <its folder>')"
    fi
  fi
  for port in "${ports[@]}"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      owner=$(grep -hF "$MARKER" "$ETC/slurm.conf" 2>/dev/null | sed "s/^.* for //") || true
      die "port $port is in use (another Slurm?${owner:+ a test cluster in $owner: run '$0 down $owner'})"
    fi
  done
}

start_daemons() {
  rm -f "$DIR"/run/*.pid
  munged --socket="$MUNGE_SOCKET" --key-file="$DIR/munge/munge.key" --pid-file="$DIR/run/munged.pid" \
    --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed" --force \
    </dev/null >>"$DIR/log/munged.out" 2>&1 || die "munged failed to start; see $DIR/log/munged.log"
  wait_for 10 test -S "$MUNGE_SOCKET" || die "munged socket $MUNGE_SOCKET did not appear"
  slurmctld -f "$CONF" -i </dev/null >>"$DIR/log/slurmctld.out" 2>&1 \
    || die "slurmctld failed to start; see $DIR/log/slurmctld.log"
  wait_for 20 test -s "$DIR/run/slurmctld.pid" || die "slurmctld wrote no PID file; see $DIR/log/slurmctld.log"
  if [ "$NODES" -gt 1 ]; then
    local i
    for ((i = 1; i <= NODES; i++)); do start_node "$i"; done
  else
    slurmd -f "$CONF" </dev/null >>"$DIR/log/slurmd.out" 2>&1 || die "slurmd failed to start; see $DIR/log/slurmd.log"
    wait_for 20 test -s "$DIR/run/slurmd.pid" || die "slurmd wrote no PID file; see $DIR/log/slurmd.log"
  fi
  wait_for "$IDLE_TIMEOUT" nodes_idle || {
    timeout 5 sinfo -N -l >&2 || true
    tail -n 20 "$DIR"/log/slurm*.log >&2 || true
    die "nodes not idle after ${IDLE_TIMEOUT}s"
  }
}

start_bridge() { # the nodes' network: slurmctld (and the host) at $SUBNET.254
  ip link add "$BRIDGE" type bridge
  ip addr add "$SUBNET.254/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
}

start_node() { # start_node K: node caig-nK, its namespaces held by a sleeping process, then its slurmd there
  local name=$NODE_PREFIX$1 holder
  # Private mounts (unshare's default propagation): /etc/hosts and /etc/slurm change for this node only.
  setsid unshare --net --uts --mount --fork bash -c \
    'mount --bind "$1/hosts" /etc/hosts &&
     { [ ! -e /etc/resolv.conf ] || mount --bind "$1/resolv.conf" /etc/resolv.conf; } &&
     mount --bind "$2" /etc/slurm && hostname "$3" &&
     echo $$ >"$4.tmp" && mv "$4.tmp" "$4" && exec sleep infinity' \
    holder "$DIR/net" "$DIR/etc" "$name" "$DIR/run/ns-$name.pid" </dev/null >>"$DIR/log/ns-$name.out" 2>&1 &
  wait_for 10 test -s "$DIR/run/ns-$name.pid" || die "no namespaces for $name; see $DIR/log/ns-$name.out"
  holder=$(pid_of "ns-$name")
  ip link add "${name}h" type veth peer name "${name}x"
  ip link set "${name}x" netns "$holder"
  ip link set "${name}h" master "$BRIDGE" up
  nsenter -t "$holder" -n sh -c "ip link set lo up && ip link set ${name}x name eth0 &&
    ip addr add $SUBNET.$1/24 dev eth0 && ip link set eth0 up && ip route add default via $SUBNET.254" \
    || die "could not give $name its address $SUBNET.$1"
  nsenter -t "$holder" -n -u -m slurmd -f "$CONF" -N "$name" </dev/null >>"$DIR/log/slurmd-$name.out" 2>&1 \
    || die "slurmd of $name failed to start; see $DIR/log/slurmd-$name.log"
  wait_for 20 test -s "$DIR/run/slurmd-$name.pid" \
    || die "slurmd of $name wrote no PID file; see $DIR/log/slurmd-$name.log"
}

stop_network() { # the bridge, and any host end of a veth left behind (an ended namespace takes its veth along)
  local node
  for node in $(recorded_nodes); do
    if ip link show "${node}h" >/dev/null 2>&1; then ip link del "${node}h"; fi
  done
  if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link del "$BRIDGE"; fi
}

stop_daemon() { # TERM, then KILL after 10 s; a zombie counts as stopped
  local pid
  pid=$(pid_of "$1")
  alive "$pid" || { rm -f "$DIR/run/$1.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  wait_for 10 gone "$pid" || {
    kill -KILL "$pid" 2>/dev/null || true
    wait_for 5 gone "$pid" || die "$1 (PID $pid) does not stop"
  }
  rm -f "$DIR/run/$1.pid"
}

cancel_jobs() { # this private cluster's jobs only: it exists for the tests
  alive "$(pid_of slurmctld)" || return 0
  timeout 10 scancel --full --state=PENDING 2>/dev/null || true
  timeout 10 scancel --full --state=RUNNING 2>/dev/null || true
  wait_for 15 no_active_jobs || true
}

no_active_jobs() { [ -z "$(timeout 5 squeue -h -t PENDING,RUNNING,COMPLETING -o %i 2>/dev/null)" ]; }

case $ACTION in
up)
  [ "$(id -u)" -eq 0 ] || skip "the local Slurm runs its daemons as root (uid $(id -u))"
  install_packages
  preflight
  write_config
  [ "$NODES" -eq 1 ] && install_etc # N nodes see DIR/etc at /etc/slurm in their own mount namespaces
  started=$SECONDS
  if [ "$NODES" -gt 1 ]; then mkdir -p "$ETC" && start_bridge; fi
  start_daemons
  echo "slurm_cluster: up in $((SECONDS - started))s: $(timeout 5 sinfo -h -p "$CPU_PARTITION" -o %N) idle," \
    "each $CPUS CPUs, $MEM_MB MB, gpu:$GPU_TYPE:$GPUS, partitions $CPU_PARTITION (default) and $GPU_PARTITION;" \
    "config $CONF"
  ;;
down)
  cancel_jobs
  for d in $(daemons); do stop_daemon "$d"; done
  stop_network
  restore_etc
  echo "slurm_cluster: down"
  ;;
status)
  rc=0
  for d in $(daemons); do
    pid=$(pid_of "$d")
    if alive "$pid"; then echo "$d: running (PID $pid)"; else echo "$d: stopped"; rc=3; fi
  done
  [ $rc -eq 0 ] && timeout 10 sinfo -N -o '%N %P %T %c %m %G'
  exit $rc
  ;;
*) usage ;;
esac
