#!/bin/bash
# total CPU seconds of the cluster in /tmp/qh/pg: postmaster incl. reaped children + live children
pm=$(cat /tmp/qh/pg/pid)
tck=$(getconf CLK_TCK)
{ awk '{print $14+$15+$16+$17}' /proc/$pm/stat; for c in $(pgrep -P $pm); do awk '{print $14+$15}' /proc/$c/stat 2>/dev/null; done; } | awk -v t=$tck '{s+=$1} END {printf "%.3f\n", s/t}'
