#!/bin/sh
# dns-capture.sh: send every DNS query made in this network namespace (a pod's) to the local
# dnssec-sidecar resolver, whatever server the process asked, except the resolver's own queries;
# and reject, packet by packet, any DNS that would leave otherwise.
#
# Three chains, each named $CAPTURE_CHAIN, in three tables, each jumped to first:
#
# nat OUTPUT (the first packet of a flow): the capture, as Istio captures DNS.
#   1. -m owner --uid-owner $RESOLVER_UID -j RETURN
#        the resolver's own queries (to the root servers, the TLDs, the cluster DNS) leave;
#   2. -p udp --dport $DNS_PORT -j REDIRECT --to-ports $RESOLVER_PORT
#   3. -p tcp --dport $DNS_PORT -j REDIRECT --to-ports $RESOLVER_PORT
#        everything else sent to port 53 of any address goes to the loopback address
#        (127.0.0.1, or ::1), where the resolver listens; for IPv6, except link-local servers
#        (fe80::/10, left to the guard: an answer from ::1 could not reach a link-local source).
#
# raw OUTPUT, and raw PREROUTING through ${CAPTURE_CHAIN}_IN: conntrack zones for UDP DNS (the
# idea of istio-iptables' DNS zones). The nat table sees only a flow's first packet: once the
# resolver's socket has closed, its conntrack entry (PODIP:PORT -> SERVER:53, not redirected)
# lives on for 30 s or more, and a workload that bound that port and sent to the same server
# would match it and leave uncaptured. So:
#   1. -s 127.0.0.1 (::1) -p udp --sport $RESOLVER_PORT -j CT --zone 2   the resolver's answers
#   2. -p udp --dport $DNS_PORT -m owner --uid-owner $RESOLVER_UID -j CT --zone 1   its queries
#   3. -p udp --dport $DNS_PORT -j CT --zone 2                            everyone else's
#   _IN: -p udp --sport $DNS_PORT -j CT --zone 1           answers from outside, to the resolver
# A workload's packet never finds the resolver's entry: it is a new flow, captured and logged.
# (The price: the pod cannot serve clients whose source port is 53; their answers would be
# taken for queries.)
#
# filter OUTPUT (every packet): the guard, whatever conntrack says.
#   1. -m owner --uid-owner $RESOLVER_UID -j RETURN
#   2. -d 127.0.0.1 (::1) -p udp/tcp --dport $RESOLVER_PORT -j RETURN    to the resolver, on lo
#        (the destination as the nat table left it; the output device stays the one routed
#        before the REDIRECT, so it is not matched)
#   3. -p udp/tcp -m multiport --dports $DNS_PORT,853 -j REJECT (TCP: with a reset)
#        any other DNS, or DNS over TLS (RFC 7858) or QUIC (RFC 9250) on 853, is refused on the
#        spot: the sender gets an error at once; the rule's counters count it.
#
# Run it as root with CAP_NET_ADMIN (and CAP_NET_RAW) in an init container that runs before the
# resolver and the workload. What it cannot stop: a process running as $RESOLVER_UID, one with
# NET_ADMIN (it could remove the rules), and frames sent on an AF_PACKET socket (NET_RAW), which
# never pass iptables - k8s/admission/ rejects pods that would allow any of them, and
# tests/test_capture.py tries each way around.
#
# IPv6: the same through ip6tables. CAPTURE_IPV6=auto (default) installs all three when
# ip6tables and the kernel's IPv6 nat work; with ip6tables but no IPv6 nat, only the guard (IPv6
# DNS is then refused, not captured); with no ip6tables at all it fails if any interface but lo
# has an IPv6 address, link-local included (fe80::1%eth0 would escape). on: the capture must be
# installed; off: IPv6 is left alone. Captured IPv6 queries go to [::1]:$RESOLVER_PORT: list
# "[::1]:53" in the resolver's `listen` to answer them, otherwise they are refused (fail closed).
#
# Idempotent: a second run rebuilds the chains and keeps the single jumps. POSIX sh; needs
# iptables (legacy or nft backend) with the owner, multiport, CT and REJECT extensions. Prints
# every rule it installs, then the chains as installed.
set -eu

RESOLVER_UID=${RESOLVER_UID:-10053}
DNS_PORT=${DNS_PORT:-53}
RESOLVER_PORT=${RESOLVER_PORT:-53}
CAPTURE_CHAIN=${CAPTURE_CHAIN:-DNSSEC_SIDECAR_DNS}
CAPTURE_IPV6=${CAPTURE_IPV6:-auto}

log() { printf 'dns-capture: %s\n' "$*"; }
die() { printf 'dns-capture: error: %s\n' "$*" >&2; exit 1; }

number() {  # number NAME VALUE MAX
    case $2 in
        '' | *[!0-9]*) die "$1 must be a number, got '$2'" ;;
    esac
    if [ "${#2}" -gt 10 ] || [ "$2" -gt "$3" ]; then
        die "$1 must be at most $3, got '$2'"
    fi
}
number RESOLVER_UID "$RESOLVER_UID" 4294967294
number DNS_PORT "$DNS_PORT" 65535
number RESOLVER_PORT "$RESOLVER_PORT" 65535
if [ "$DNS_PORT" -lt 1 ] || [ "$RESOLVER_PORT" -lt 1 ]; then
    die "ports must be 1 to 65535"
fi
case $CAPTURE_CHAIN in
    '' | *[!A-Za-z0-9_-]*)
        die "CAPTURE_CHAIN must be letters, digits, - and _, got '$CAPTURE_CHAIN'" ;;
esac
# iptables allows 28 characters; the raw table's PREROUTING chain adds "_IN".
[ "${#CAPTURE_CHAIN}" -le 25 ] || die "CAPTURE_CHAIN must be at most 25 characters"
case $CAPTURE_IPV6 in
    auto | on | off) ;;
    *) die "CAPTURE_IPV6 must be auto, on or off, got '$CAPTURE_IPV6'" ;;
esac

# Conntrack zones (raw table): the resolver's upstream DNS, and everything else's DNS.
UPSTREAM_ZONE=1
CAPTURED_ZONE=2
# The ports the guard closes to all but the resolver: DNS, and DNS over TLS or QUIC.
DOT_PORT=853

# run FAMILY COMMAND...: print the command, then run it.
run() {
    family=$1
    shift
    log "$family: $*"
    "$@"
}

# chain IPTABLES FAMILY TABLE CHAIN: an empty CHAIN in TABLE (made, or flushed if there).
chain() {
    if "$1" -w -t "$3" -n -L "$4" >/dev/null 2>&1; then
        run "$2" "$1" -w -t "$3" -F "$4"
    else
        run "$2" "$1" -w -t "$3" -N "$4"
    fi
}

# jump IPTABLES FAMILY TABLE HOOK CHAIN: HOOK's first rule jumps to CHAIN, once.
jump() {
    if "$1" -w -t "$3" -C "$4" -j "$5" >/dev/null 2>&1; then
        log "$2: $3 $4 already jumps to $5"
    else
        run "$2" "$1" -w -t "$3" -I "$4" 1 -j "$5"
    fi
}

# show IPTABLES FAMILY TABLE HOOK CHAIN: print the jump and the chain as installed.
show() {
    log "$2: installed in $3:"
    "$1" -w -t "$3" -S "$4" | grep -e "-j $5\$" | sed 's/^/    /'
    "$1" -w -t "$3" -S "$5" | sed 's/^/    /'
}

# zones IPTABLES FAMILY LOOPBACK: the conntrack zones of UDP DNS, in the raw table.
zones() {
    ipt=$1
    family=$2
    chain "$ipt" "$family" raw "$CAPTURE_CHAIN"
    # The resolver's answers to what was captured (from the loopback address it listens on,
    # whoever owns the socket), then its own queries upstream, then everyone else's.
    run "$family" "$ipt" -w -t raw -A "$CAPTURE_CHAIN" -s "$3" -p udp --sport "$RESOLVER_PORT" \
        -j CT --zone "$CAPTURED_ZONE"
    run "$family" "$ipt" -w -t raw -A "$CAPTURE_CHAIN" -p udp --dport "$DNS_PORT" \
        -m owner --uid-owner "$RESOLVER_UID" -j CT --zone "$UPSTREAM_ZONE"
    run "$family" "$ipt" -w -t raw -A "$CAPTURE_CHAIN" -p udp --dport "$DNS_PORT" \
        -j CT --zone "$CAPTURED_ZONE"
    # Answers from outside belong to the resolver's queries. (Packets over lo keep the entry
    # they were sent with: the CT target leaves a tracked packet alone.)
    chain "$ipt" "$family" raw "${CAPTURE_CHAIN}_IN"
    run "$family" "$ipt" -w -t raw -A "${CAPTURE_CHAIN}_IN" -p udp --sport "$DNS_PORT" \
        -j CT --zone "$UPSTREAM_ZONE"
    jump "$ipt" "$family" raw OUTPUT "$CAPTURE_CHAIN"
    jump "$ipt" "$family" raw PREROUTING "${CAPTURE_CHAIN}_IN"
    show "$ipt" "$family" raw OUTPUT "$CAPTURE_CHAIN"
    show "$ipt" "$family" raw PREROUTING "${CAPTURE_CHAIN}_IN"
}

# redirect IPTABLES FAMILY: the capture, in the nat table.
redirect() {
    ipt=$1
    family=$2
    chain "$ipt" "$family" nat "$CAPTURE_CHAIN"
    run "$family" "$ipt" -w -t nat -A "$CAPTURE_CHAIN" \
        -m owner --uid-owner "$RESOLVER_UID" -j RETURN
    if [ "$family" = IPv6 ]; then
        # A query to a link-local server (fe80::1%eth0) is left to the guard, which refuses it:
        # redirected to ::1, its answer would have no way back to the link-local source.
        run "$family" "$ipt" -w -t nat -A "$CAPTURE_CHAIN" -d fe80::/10 -j RETURN
    fi
    for proto in udp tcp; do
        run "$family" "$ipt" -w -t nat -A "$CAPTURE_CHAIN" \
            -p "$proto" --dport "$DNS_PORT" -j REDIRECT --to-ports "$RESOLVER_PORT"
    done
    jump "$ipt" "$family" nat OUTPUT "$CAPTURE_CHAIN"
    show "$ipt" "$family" nat OUTPUT "$CAPTURE_CHAIN"
}

# guard IPTABLES FAMILY LOOPBACK: the per-packet guard, in the filter table.
guard() {
    ipt=$1
    family=$2
    chain "$ipt" "$family" filter "$CAPTURE_CHAIN"
    run "$family" "$ipt" -w -t filter -A "$CAPTURE_CHAIN" \
        -m owner --uid-owner "$RESOLVER_UID" -j RETURN
    for proto in udp tcp; do
        run "$family" "$ipt" -w -t filter -A "$CAPTURE_CHAIN" -d "$3" \
            -p "$proto" --dport "$RESOLVER_PORT" -j RETURN
    done
    run "$family" "$ipt" -w -t filter -A "$CAPTURE_CHAIN" \
        -p udp -m multiport --dports "$DNS_PORT,$DOT_PORT" -j REJECT
    run "$family" "$ipt" -w -t filter -A "$CAPTURE_CHAIN" \
        -p tcp -m multiport --dports "$DNS_PORT,$DOT_PORT" -j REJECT --reject-with tcp-reset
    jump "$ipt" "$family" filter OUTPUT "$CAPTURE_CHAIN"
    show "$ipt" "$family" filter OUTPUT "$CAPTURE_CHAIN"
}

# capture IPTABLES FAMILY LOOPBACK: all three. The guard goes first: from then on nothing of
# the workload's DNS leaves, whatever the other two do.
capture() {
    guard "$@"
    zones "$@"
    redirect "$1" "$2"
}

# ipv6_in_use: an interface other than lo has an IPv6 address (link-local included).
ipv6_in_use() {
    [ -r /proc/net/if_inet6 ] || return 1
    # /proc/net/if_inet6: address ifindex prefixlen scope flags name.
    awk '$6 != "lo" { found = 1 } END { exit !found }' /proc/net/if_inet6
}

command -v iptables >/dev/null 2>&1 || die "iptables not found"
log "capturing UDP and TCP port $DNS_PORT to local port $RESOLVER_PORT, except UID" \
    "$RESOLVER_UID; rejecting any other DNS (ports $DNS_PORT and $DOT_PORT)"
capture iptables IPv4 127.0.0.1

if [ "$CAPTURE_IPV6" = off ]; then
    log "IPv6: skipped (CAPTURE_IPV6=off)"
elif ! command -v ip6tables >/dev/null 2>&1 \
        || ! ip6tables -w -t filter -n -L OUTPUT >/dev/null 2>&1; then
    if [ "$CAPTURE_IPV6" = on ]; then
        die "IPv6: ip6tables is not available (CAPTURE_IPV6=on)"
    elif ipv6_in_use; then
        die "IPv6: an interface has an IPv6 address but ip6tables is not available:" \
            "IPv6 DNS would bypass the resolver (set CAPTURE_IPV6=off to accept that)"
    fi
    log "IPv6: skipped (no ip6tables, and no IPv6 address but on lo)"
elif ip6tables -w -t nat -n -L OUTPUT >/dev/null 2>&1; then
    capture ip6tables IPv6 ::1
elif [ "$CAPTURE_IPV6" = on ]; then
    die "IPv6: the kernel's IPv6 nat table is not available (CAPTURE_IPV6=on)"
else
    guard ip6tables IPv6 ::1
    log "IPv6: no IPv6 nat here: IPv6 DNS is refused by the guard, not captured"
fi
log "done"
