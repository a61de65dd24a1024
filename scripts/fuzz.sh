#!/usr/bin/env bash
# Runs wdpool's coverage-guided fuzz targets (fuzz/: cargo-fuzz, libFuzzer,
# AddressSanitizer) one after another, each for a set time, and reports the
# executions of each and in all. Any crash, panic, leak, hang (-timeout) or
# out-of-memory fails the run; libFuzzer's input that caused it is kept in
# fuzz/artifacts/<target>/ (git-ignored) and the command to replay it printed.
#
#   scripts/fuzz.sh [--seconds N] [--scratch] [TARGET...]   fuzz (default: every target, 300 s each; make fuzz: 900)
#   scripts/fuzz.sh --cmin [TARGET...]                      minimize fuzz/corpus/<target> in place
#
#   --scratch   new inputs go to a temporary directory: the committed corpus
#               (fuzz/corpus/<target>) is only read (make test-fuzz). Without
#               it they are added to fuzz/corpus/<target> (make fuzz), to be
#               committed, after `--cmin` when it grew large.
#
# Environment: FUZZ_TIMEOUT (seconds one input may take before it counts as a
# hang, default 10), FUZZ_RSS_MB (memory limit, default 2048), FUZZ_ARGS
# (more libFuzzer flags).
#
# Needs the nightly Rust toolchain (`cargo +nightly`: sanitizers and
# libFuzzer's instrumentation are nightly-only) and cargo-fuzz; this script
# says what to install when one is missing (scripts/install-deps.sh installs
# cargo-fuzz).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CARGO_FUZZ_VERSION=0.13.2
ALL_TARGETS=(message config sequence)
seconds=300
scratch=0
cmin=0
targets=()

die() { echo "fuzz: $*" >&2; exit 1; }

while (($#)); do
  case "$1" in
    --seconds) [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || die "--seconds takes a whole number of seconds"; seconds="$2"; shift 2 ;;
    --scratch) scratch=1; shift ;;
    --cmin) cmin=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [[ " ${ALL_TARGETS[*]} " == *" $1 "* ]] || die "unknown target $1 (targets: ${ALL_TARGETS[*]})"; targets+=("$1"); shift ;;
  esac
done
((${#targets[@]})) || targets=("${ALL_TARGETS[@]}")

export PATH="$HOME/.cargo/bin:$PATH"
command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust with rustup (https://rustup.rs)"
cargo +nightly --version >/dev/null 2>&1 ||
  die "the nightly Rust toolchain is missing (fuzzing needs it for libFuzzer and the sanitizers): rustup toolchain install nightly"
cargo fuzz --version >/dev/null 2>&1 ||
  die "cargo-fuzz is missing: cargo install cargo-fuzz --version $CARGO_FUZZ_VERSION --locked (make deps does this)"

cd "$ROOT"

if ((cmin)); then
  for t in "${targets[@]}"; do
    before=$(du -sk "fuzz/corpus/$t" 2>/dev/null | cut -f1)
    cargo +nightly fuzz cmin "$t" -- -timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb="${FUZZ_RSS_MB:-2048}" 2>&1 | tail -3
    echo "fuzz: $t corpus: ${before:-0} KiB -> $(du -sk "fuzz/corpus/$t" | cut -f1) KiB, $(ls "fuzz/corpus/$t" | wc -l) inputs"
  done
  exit 0
fi

echo "fuzz: building ${targets[*]} (cargo +nightly fuzz build, AddressSanitizer)" >&2
for t in "${targets[@]}"; do
  cargo +nightly fuzz build "$t" >&2
done

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
total_runs=0
total_secs=0
rows=()
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  corpora=("fuzz/corpus/$t")
  if ((scratch)); then
    mkdir -p "$logs/corpus-$t"
    corpora=("$logs/corpus-$t" "fuzz/corpus/$t")
  fi
  echo "fuzz: $t for $seconds s (corpus: $(ls "fuzz/corpus/$t" | wc -l) inputs)" >&2
  start=$(date +%s)
  # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
  if ! cargo +nightly fuzz run "$t" "${corpora[@]}" -- \
      -max_total_time="$seconds" -timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb="${FUZZ_RSS_MB:-2048}" \
      -detect_leaks=1 -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" ${FUZZ_ARGS:-} \
      >"$logs/$t.log" 2>&1; then
    # The report (sanitizer, panic or timeout), then how it ended.
    grep -v '^"' "$logs/$t.log" | grep -m1 -A80 -E '^==[0-9]+==|panicked at|ALARM|out-of-memory' >&2 || true
    tail -30 "$logs/$t.log" >&2
    echo "fuzz: $t FAILED: the input is in fuzz/artifacts/$t/; replay it with" >&2
    echo "      cargo +nightly fuzz run $t fuzz/artifacts/$t/<file>" >&2
    exit 1
  fi
  secs=$(( $(date +%s) - start ))
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log" | tail -1)
  [[ "$runs" =~ ^[0-9]+$ ]] || { tail -20 "$logs/$t.log" >&2; die "$t: libFuzzer printed no execution count"; }
  cov=$(grep -o 'cov: [0-9]*' "$logs/$t.log" | tail -1 | cut -d' ' -f2)
  rows+=("$(printf '%-10s %12d %8d %10d %8s' "$t" "$runs" "$secs" $((runs / (secs > 0 ? secs : 1))) "${cov:-?}")")
  echo "fuzz: ${rows[-1]}" >&2
  total_runs=$((total_runs + runs))
  total_secs=$((total_secs + secs))
done

printf '%-10s %12s %8s %10s %8s\n' target executions seconds exec/s coverage
printf '%s\n' "${rows[@]}"
printf '%-10s %12d %8d %10d\n' total "$total_runs" "$total_secs" $((total_runs / (total_secs > 0 ? total_secs : 1)))
echo "fuzz: no crash, panic, leak or hang in $total_runs executions"
