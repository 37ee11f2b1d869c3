#!/usr/bin/env bash
# Fuzzing driver.
#   scripts/fuzz.sh smoke [RUNS]          every target, RUNS executions each (default 20000)
#   scripts/fuzz.sh campaign [SECONDS] [TARGET...]
#                                         long campaign, SECONDS per target (default 3600)
# Seeds (real packets) live in fuzz/seeds/<target>; what libFuzzer discovers goes to
# fuzz/corpus/<target> (not committed). Crashes land in fuzz/artifacts/<target>.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
export RUSTC_BOOTSTRAP=1
mode=${1:-smoke}
shift || true
case "$mode" in
    smoke) runs=${1:-20000}; targets=$(cargo fuzz list) ;;
    campaign) secs=${1:-3600}; shift || true; targets=${*:-$(cargo fuzz list)} ;;
    *) echo "usage: $0 smoke [RUNS] | campaign [SECONDS] [TARGET...]" >&2; exit 2 ;;
esac
cargo fuzz build -O
mkdir -p target
for t in $targets; do
    mkdir -p "corpus/$t" "seeds/$t"
    if [ "$mode" = smoke ]; then
        echo "fuzz smoke: $t ($runs runs)"
        log="target/smoke-$t.log"
        if ! cargo fuzz run -O "$t" "corpus/$t" "seeds/$t" -- -runs="$runs" -print_final_stats=1 >"$log" 2>&1; then
            tail -40 "$log" >&2
            echo "fuzz target $t failed (full log: fuzz/$log)" >&2
            exit 1
        fi
        grep -E 'stat::number_of_executed_units' "$log" || true
    else
        echo "fuzz campaign: $t (${secs}s)"
        cargo fuzz run -O "$t" "corpus/$t" "seeds/$t" -- -max_total_time="$secs" -print_final_stats=1
    fi
done
