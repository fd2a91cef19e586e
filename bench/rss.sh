# Memory of a server under test, from the kernel's own counters (sourced by
# the bench scripts). A server's "tree" is it and its children (gunicorn
# forks its worker); a tree's figure is the sum over its processes.
# Peaks are the kernel's high-water mark (VmHWM), reset with clear_refs, so
# no peak between two samples is missed. For a tree it is the sum of each
# process's own peak, which can only overstate the tree's.

rss_tree() { echo "$1" $(pgrep -P "$1" || true); }

rss_mib() { # PID FIELD (VmRSS: now, VmHWM: peak since the last peak_reset)
  local total=0 p v
  for p in $(rss_tree "$1"); do
    v=$(awk -v f="$2:" '$1 == f {print $2}' "/proc/$p/status" 2>/dev/null || true)
    total=$((total + ${v:-0}))
  done
  echo "scale=1; $total / 1024" | bc
}

# "5" sets the peak (VmHWM) to the current RSS (proc(5), clear_refs).
peak_reset() {
  local p
  for p in $(rss_tree "$1"); do
    echo 5 >"/proc/$p/clear_refs" 2>/dev/null || log "cannot reset the peak RSS of $p: peaks may be overstated"
  done
}

# CPU time (user + system) a process has used so far, in microseconds.
cpu_us() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.0f\n", ($14 + $15) * 1000000 / hz}' "/proc/$1/stat"; }
