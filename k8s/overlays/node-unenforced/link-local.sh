#!/bin/sh
# link-local.sh: give the node the address the node resolver listens on, as NodeLocal DNSCache
# does: a dummy interface $INTERFACE holding $LOCAL_ADDRESS/32 (or /128), so that pods reach
# it through their default route to the node. Also exempts DNS to and from that address from
# connection tracking (NOTRACK in the raw table), against conntrack table exhaustion and the
# UDP insertion races behind the "5 second DNS delay" of Kubernetes, and accepts that DNS in the
# filter table. Idempotent; prints what it does. Run as root with NET_ADMIN (and NET_RAW) in the
# host network namespace.
set -eu

LOCAL_ADDRESS=${LOCAL_ADDRESS:-169.254.20.10}
INTERFACE=${INTERFACE:-dnssec0}
NOTRACK=${NOTRACK:-on}

log() { printf 'link-local: %s\n' "$*"; }
die() { printf 'link-local: error: %s\n' "$*" >&2; exit 1; }
run() { log "$*"; "$@"; }

case $INTERFACE in
    '' | *[!A-Za-z0-9_.-]*) die "INTERFACE: letters, digits, . - and _ only, got '$INTERFACE'" ;;
esac
[ "${#INTERFACE}" -le 15 ] || die "INTERFACE: at most 15 characters"
case $LOCAL_ADDRESS in
    *:*) prefix=128 ipt=ip6tables ;;
    *.*.*.*) prefix=32 ipt=iptables ;;
    *) die "LOCAL_ADDRESS: not an address: '$LOCAL_ADDRESS'" ;;
esac
case $NOTRACK in on | off) ;; *) die "NOTRACK must be on or off" ;; esac

if ip link show dev "$INTERFACE" >/dev/null 2>&1; then
    log "interface $INTERFACE already there"
else
    run ip link add "$INTERFACE" type dummy
fi
run ip addr replace "$LOCAL_ADDRESS/$prefix" dev "$INTERFACE"
run ip link set dev "$INTERFACE" up

# The host's iptables backend: the one holding more rules (kube-proxy's), as the iptables-wrapper
# of Kubernetes images decides; mixing backends on one host makes the rules hard to follow.
backend() {
    legacy=$("$1-legacy-save" 2>/dev/null | grep -c '^-' || true)
    nft=$("$1-nft-save" 2>/dev/null | grep -c '^-' || true)
    if [ "${legacy:-0}" -gt "${nft:-0}" ] && command -v "$1-legacy" >/dev/null 2>&1; then
        echo "$1-legacy"
    elif command -v "$1-nft" >/dev/null 2>&1; then
        echo "$1-nft"
    else
        echo "$1"
    fi
}

# ensure TABLE CHAIN RULE...: add the rule unless it is there (-I: first, ahead of any DROP).
ensure() {
    table=$1
    chain=$2
    shift 2
    if "$ipt" -w -t "$table" -C "$chain" "$@" >/dev/null 2>&1; then
        log "already there: $ipt -t $table -A $chain $*"
    else
        run "$ipt" -w -t "$table" -I "$chain" 1 "$@"
    fi
}

if [ "$NOTRACK" = on ]; then
    ipt=$(backend "$ipt")
    log "iptables backend: $ipt"
    for proto in udp tcp; do
        # Not tracked, so accepted here explicitly: a host firewall that accepts only
        # ESTABLISHED traffic would otherwise drop the untracked replies.
        ensure raw PREROUTING -d "$LOCAL_ADDRESS" -p "$proto" --dport 53 -j NOTRACK
        ensure raw OUTPUT -s "$LOCAL_ADDRESS" -p "$proto" --sport 53 -j NOTRACK
        ensure filter INPUT -d "$LOCAL_ADDRESS" -p "$proto" --dport 53 -j ACCEPT
        ensure filter OUTPUT -s "$LOCAL_ADDRESS" -p "$proto" --sport 53 -j ACCEPT
    done
fi
ip addr show dev "$INTERFACE" | sed 's/^/    /'
log "done"
