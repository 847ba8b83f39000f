#!/usr/bin/env bash
# Keep every core busy, to check that something (the test suite) also passes on a loaded machine.
#
#   scripts/cpu_burner.sh SECONDS                  burn for SECONDS (Ctrl-C stops early)
#   scripts/cpu_burner.sh SECONDS COMMAND [ARG...]  run COMMAND while burning; the burners stop
#                                                   when it ends (or after SECONDS), and the
#                                                   script exits with COMMAND's status
#
# One busy loop per core (CPU_BURNERS overrides the count). Each loop is bounded by SECONDS and
# killed, by its own pid, when this script exits for any reason.
set -u

if [ $# -lt 1 ] || ! [[ "$1" =~ ^[0-9]+$ ]]; then
    echo "usage: $0 SECONDS [COMMAND [ARG...]]" >&2
    exit 2
fi
seconds=$1
shift
count=${CPU_BURNERS:-$(nproc)}
burners=()

stop_burners() {
    for pid in "${burners[@]}"; do
        kill "$pid" 2>/dev/null
    done
    wait "${burners[@]}" 2>/dev/null
}
trap stop_burners EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for _ in $(seq "$count"); do
    timeout "$seconds" sh -c 'while :; do :; done' &
    burners+=("$!")
done
echo "cpu_burner: $count busy loops for at most ${seconds} s" >&2

if [ $# -eq 0 ]; then
    wait "${burners[@]}"
    exit 0
fi
"$@"
