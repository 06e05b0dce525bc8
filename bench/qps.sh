#!/usr/bin/env bash
# Cached queries per second, p50/p99 latency at half load and an offered-load sweep: dnsperf
# against dnssec-sidecar (forensic log on disk, in tmpfs, off) and against Unbound, Knot
# Resolver and PowerDNS Recursor, one worker/thread each, all validating the signed test tree
# from the same trust anchor, caches warm, the same 1,000-name query file, runs alternated
# across the servers and medians reported with the ratios to Unbound; then a control at half
# load (Unbound and the tmpfs-logged sidecar while a side thread writes to the disk what the
# log on disk wrote). Then bench/plot.py draws bench/qps.png.
#
#   sudo unshare -n sh -c 'ip link set lo up && bash bench/qps.sh'   # in a namespace of its own
#   ROUNDS=3 SECONDS_PER_RUN=10 WORKERS=1 by default; bench/peers/qps.py --help for the rest
#
# Needs root (everything listens on port 53 of 127.0.0.x: the tree on .10-.57, the resolvers
# on .70-.75) and: apt-get install dnsperf unbound knot-resolver pdns-recursor; pip install
# '.[bench]' for the plot. A peer that is not installed or does not start is left out, saying why.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in dnsperf unbound python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install dnsperf unbound)"; exit 2; }
done
python3 -m bench.peers.qps "$@"
if python3 -c 'import matplotlib' 2>/dev/null; then
  python3 bench/plot.py
else
  echo "# no plot: matplotlib missing (pip install '.[bench]')"
fi
