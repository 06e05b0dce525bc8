#!/bin/sh
# dns-capture.sh: send every DNS query made in this network namespace (a pod's) to the local
# dnssec-sidecar resolver, whatever server the process asked, except the resolver's own queries.
#
# In the nat table's OUTPUT chain (locally generated packets) it installs a jump to a chain of
# its own, $CAPTURE_CHAIN, holding:
#   1. -m owner --uid-owner $RESOLVER_UID -j RETURN
#        the resolver's own traffic is left alone: its upstream queries (to the root servers, the
#        TLDs, the cluster DNS) must leave, not loop back to itself;
#   2. -p udp --dport $DNS_PORT -j REDIRECT --to-ports $RESOLVER_PORT
#   3. -p tcp --dport $DNS_PORT -j REDIRECT --to-ports $RESOLVER_PORT
#        everything else sent to port 53 of any address goes to the loopback address instead
#        (REDIRECT: 127.0.0.1 for IPv4, ::1 for IPv6), where the resolver listens.
# This is how Istio captures DNS. Run it as root with CAP_NET_ADMIN (and CAP_NET_RAW) in an init
# container that runs before the resolver and the workload: the workload then has no way around
# the resolver over port 53 (it must not run as $RESOLVER_UID, and must not have NET_ADMIN).
#
# IPv6: the same rules through ip6tables. CAPTURE_IPV6=auto (default) installs them when
# ip6tables and the kernel's IPv6 nat work, and fails if they do not while the namespace has a
# global IPv6 address (IPv6 DNS would bypass the resolver); on: must install them; off: skip.
# Captured IPv6 queries go to [::1]:$RESOLVER_PORT: list "[::1]:53" in the resolver's `listen` to
# answer them, otherwise they are refused (fail closed).
#
# Idempotent: a second run rebuilds the chain and keeps the single jump. POSIX sh; needs
# iptables (legacy or nft backend). Prints every rule it installs, then the chain as installed.
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
[ "${#CAPTURE_CHAIN}" -le 28 ] || die "CAPTURE_CHAIN must be at most 28 characters"
case $CAPTURE_IPV6 in
    auto | on | off) ;;
    *) die "CAPTURE_IPV6 must be auto, on or off, got '$CAPTURE_IPV6'" ;;
esac

# run FAMILY COMMAND...: print the command, then run it.
run() {
    family=$1
    shift
    log "$family: $*"
    "$@"
}

# capture IPTABLES FAMILY: install the chain and the jump with iptables or ip6tables.
capture() {
    ipt=$1
    family=$2
    if "$ipt" -w -t nat -n -L "$CAPTURE_CHAIN" >/dev/null 2>&1; then
        run "$family" "$ipt" -w -t nat -F "$CAPTURE_CHAIN"
    else
        run "$family" "$ipt" -w -t nat -N "$CAPTURE_CHAIN"
    fi
    run "$family" "$ipt" -w -t nat -A "$CAPTURE_CHAIN" \
        -m owner --uid-owner "$RESOLVER_UID" -j RETURN
    for proto in udp tcp; do
        run "$family" "$ipt" -w -t nat -A "$CAPTURE_CHAIN" \
            -p "$proto" --dport "$DNS_PORT" -j REDIRECT --to-ports "$RESOLVER_PORT"
    done
    if "$ipt" -w -t nat -C OUTPUT -j "$CAPTURE_CHAIN" >/dev/null 2>&1; then
        log "$family: OUTPUT already jumps to $CAPTURE_CHAIN"
    else
        run "$family" "$ipt" -w -t nat -I OUTPUT 1 -j "$CAPTURE_CHAIN"
    fi
    log "$family: installed:"
    "$ipt" -w -t nat -S OUTPUT | grep -e "-j $CAPTURE_CHAIN\$" | sed 's/^/    /'
    "$ipt" -w -t nat -S "$CAPTURE_CHAIN" | sed 's/^/    /'
}

# ipv6_in_use: the namespace has a global IPv6 address on an interface other than lo.
ipv6_in_use() {
    [ -r /proc/net/if_inet6 ] || return 1
    # /proc/net/if_inet6: address ifindex prefixlen scope flags name; scope 00 is global.
    awk '$4 == "00" && $6 != "lo" { found = 1 } END { exit !found }' /proc/net/if_inet6
}

command -v iptables >/dev/null 2>&1 || die "iptables not found"
log "capturing UDP and TCP port $DNS_PORT to local port $RESOLVER_PORT, except UID $RESOLVER_UID"
capture iptables IPv4

if [ "$CAPTURE_IPV6" = off ]; then
    log "IPv6: skipped (CAPTURE_IPV6=off)"
elif command -v ip6tables >/dev/null 2>&1 && ip6tables -w -t nat -n -L OUTPUT >/dev/null 2>&1; then
    capture ip6tables IPv6
elif [ "$CAPTURE_IPV6" = on ]; then
    die "IPv6: ip6tables or the kernel's IPv6 nat table is not available (CAPTURE_IPV6=on)"
elif ipv6_in_use; then
    die "IPv6: this namespace has a global IPv6 address but ip6tables nat is not available:" \
        "IPv6 DNS would bypass the resolver (set CAPTURE_IPV6=off to accept that)"
else
    log "IPv6: skipped (no ip6tables nat, and no global IPv6 address here)"
fi
log "done"
