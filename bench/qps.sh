#!/usr/bin/env bash
# Cached queries per second: dnsperf (Debian `dnsperf`) against dnssec-sidecar and against
# Unbound (Debian `unbound`), one worker/thread each, both validating the signed test tree from
# the same trust anchor, caches warm, the same 1,000-name query file, runs alternated
# (ours-log-on, ours-log-off, unbound, ...) and the medians reported with the ratios.
#
#   sudo bench/qps.sh                      # ROUNDS=3 SECONDS_PER_RUN=10 by default
#
# Needs root (everything listens on port 53 of 127.0.0.x) and: apt-get install dnsperf unbound
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
WORKERS=${WORKERS:-1}  # dnssec-sidecar processes (config `workers`); Unbound keeps one thread
OURS_ON=127.0.0.70 OURS_OFF=127.0.0.71 UNBOUND=127.0.0.72
for tool in dnsperf unbound python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install dnsperf unbound)"; exit 2; }
done

tmp=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

python3 -m tests.testtree --no-forwarder >"$tmp/tree.log" 2>&1 & pids+=($!)

# 1,000 names over the tree: wildcard expansions (secure, with their NSEC/NSEC3 proofs), plain
# secure names, names in insecure zones and proven non-existent names.
python3 - "$tmp" "$WORKERS" <<'EOF'
import json, sys
from tests.testtree import authority, zonedata
tmp, workers = sys.argv[1], int(sys.argv[2])
m = zonedata.manifest()
children = [z for z, e in m["zones"].items() if e["kind"] == "child"]
insecure = [z for z, e in m["zones"].items() if e["kind"] == "insecure"]
lines = []
for i in range(1000):
    zone = children[i % len(children)]
    kind = i % 10
    if kind < 5:
        lines.append(f"q{i}.wild.{zone} A")
    elif kind < 7:
        lines.append(f"www.{zone} {'A' if kind == 5 else 'AAAA'}")
    elif kind < 8:
        lines.append(f"www.{insecure[i % len(insecure)]} A")
    else:
        lines.append(f"nx{i}.{zone} A")
open(f"{tmp}/queries.txt", "w").write("\n".join(lines) + "\n")
(hint_name, hint_addr), = m["root_hints"].items()
anchors = authority.trust_anchor_lines(m)
common = (f'root_hints: [{{name: {hint_name}, addresses: ["{hint_addr}"]}}]\n'
          "trust_anchors: [" + ", ".join(f'"{a}"' for a in anchors) + "]\n"
          f'validation: {{time: "{authority.validation_time()}"}}\n'
          "metrics: {enabled: false}\n"
          f"workers: {workers}\n")
open(f"{tmp}/on.yaml", "w").write(f'listen: ["127.0.0.70:53"]\nlog: {{path: {tmp}/log.jsonl}}\n' + common)
open(f"{tmp}/off.yaml", "w").write('listen: ["127.0.0.71:53"]\nlog: {enabled: false}\n' + common)
ds = " ".join(anchors[0].split()[3:])
open(f"{tmp}/unbound.conf", "w").write(f"""server:
  interface: 127.0.0.72
  port: 53
  num-threads: 1
  do-not-query-localhost: no
  do-ip6: no
  use-syslog: no
  logfile: ""
  chroot: ""
  username: ""
  directory: "{tmp}"
  pidfile: "{tmp}/unbound.pid"
  root-hints: "{tmp}/root.hints"
  trust-anchor: ". DS {ds}"
  val-override-date: "20260601000000"
  qname-minimisation: yes
  msg-cache-size: 64m
  rrset-cache-size: 128m
  access-control: 127.0.0.0/8 allow
  module-config: "validator iterator"
""")
open(f"{tmp}/root.hints", "w").write(f". 3600000 IN NS {hint_name}\n{hint_name} 3600000 IN A {hint_addr}\n")
EOF

python3 -m resolver.cli serve --config "$tmp/on.yaml" >/dev/null 2>"$tmp/on.err" & pids+=($!)
python3 -m resolver.cli serve --config "$tmp/off.yaml" >/dev/null 2>"$tmp/off.err" & pids+=($!)
unbound -d -c "$tmp/unbound.conf" >"$tmp/unbound.log" 2>&1 & pids+=($!)
sleep 3

run() {  # server seconds -> "qps avg_latency_ms lost"
  dnsperf -s "$1" -d "$tmp/queries.txt" -l "$2" -c 1 -q 64 -S 0 2>/dev/null | awk '
    /Queries lost:/ {lost=$3}
    /Queries per second:/ {qps=$4}
    /Average Latency/ {lat=$4*1000}
    END {printf "%.0f %.3f %s\n", qps, lat, lost}'
}
for server in $OURS_ON $OURS_OFF $UNBOUND; do run "$server" 3 >/dev/null; done  # warm the caches

declare -A results
for round in $(seq "$ROUNDS"); do
  for server in $OURS_ON $OURS_OFF $UNBOUND; do
    results[$server]+="$(run "$server" "$SECONDS_PER_RUN");"
  done
done

echo "# $(uname -n) $(uname -m), $(nproc) CPUs, $(python3 --version), $(unbound -V | head -1), dnsperf $(dnsperf 2>&1 | awk '/Version/ {print $2}')"
echo "# $ROUNDS alternating rounds x ${SECONDS_PER_RUN}s, 1,000 names, 64 queries in flight, caches warm; medians; dnssec-sidecar workers: $WORKERS"
python3 - "${results[$OURS_ON]}" "${results[$OURS_OFF]}" "${results[$UNBOUND]}" <<'EOF'
import statistics, sys
names = ["dnssec-sidecar, log on", "dnssec-sidecar, log off", "unbound 1 thread"]
rows = {}
for name, text in zip(names, sys.argv[1:]):
    runs = [r.split() for r in text.strip(";").split(";")]
    rows[name] = (statistics.median(float(r[0]) for r in runs),
                  statistics.median(float(r[1]) for r in runs), sum(int(r[2]) for r in runs))
base = rows["unbound 1 thread"][0]
print(f"{'server':26s} {'qps':>9s} {'avg latency':>12s} {'lost':>6s} {'vs unbound':>11s}")
for name, (qps, lat, lost) in rows.items():
    print(f"{name:26s} {qps:9.0f} {lat:9.3f} ms {lost:6d} {qps / base:10.2f}x")
EOF
