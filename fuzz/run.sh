#!/usr/bin/env bash
# Runs the libFuzzer targets built in BUILD_DIR (fuzz/CMakeLists.txt), each for SECONDS, up to
# JOBS of them at once, and fails if any finds anything (a crash, a sanitizer report, a leak, a
# timeout, running out of memory).
#
#   fuzz/run.sh BUILD_DIR SECONDS [JOBS] [TARGET...]
#
# Each target first runs every input of its committed corpus (fuzz/corpus/<target>: the seeds
# and every input that once found a bug), then mutates from it for SECONDS. New inputs go to
# BUILD_DIR/corpus/<target> (kept between runs, never committed by this script), a finding to
# BUILD_DIR/artifacts/<target>/, the log to BUILD_DIR/logs/<target>.log; the tail of a failing
# target's log is printed. To reproduce a finding: BUILD_DIR/fuzz_<target> <artifact file>.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 BUILD_DIR SECONDS [JOBS] [TARGET...]" >&2
  exit 2
fi
build_dir="$1"
seconds="$2"
jobs="${3:-2}"
shift $(($# < 3 ? $# : 3))
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  targets=(http_request request_body list_query policy_file)
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Every sanitizer report is fatal and shows its stack; leaks are findings too.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

run_one() {
  local target="$1"
  local binary="${build_dir}/fuzz_${target}"
  local work="${build_dir}/corpus/${target}"
  local artifacts="${build_dir}/artifacts/${target}/"
  local log="${build_dir}/logs/${target}.log"
  mkdir -p "${work}" "${artifacts}" "$(dirname "${log}")"
  local started=${SECONDS}
  # -timeout: one input taking 10 s is a hang; -rss_limit_mb: a body or policy that makes the
  # process grow past 2 GiB is a finding; -max_len: room for a full request with its body.
  if "${binary}" -runs=0 "${here}/corpus/${target}" >"${log}" 2>&1 &&
    "${binary}" -max_total_time="${seconds}" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
      -print_final_stats=1 -artifact_prefix="${artifacts}" \
      "${work}" "${here}/corpus/${target}" >>"${log}" 2>&1; then
    echo "fuzz ${target}: no finding in ${seconds} s ($(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "${log}" | grep -o '[0-9]*$' || echo '?') runs, $((SECONDS - started)) s)"
  else
    echo "fuzz ${target}: FINDING (log ${log}, input in ${artifacts}):" >&2
    tail -n 60 "${log}" >&2
    return 1
  fi
}

failed=0
pids=()
names=()
for target in "${targets[@]}"; do
  if [[ ! -x "${build_dir}/fuzz_${target}" ]]; then
    echo "fuzz: no ${build_dir}/fuzz_${target}; build it first (make fuzz-ci)" >&2
    exit 2
  fi
  while [[ ${#pids[@]} -ge ${jobs} ]]; do
    if ! wait "${pids[0]}"; then failed=1; fi
    pids=("${pids[@]:1}")
    names=("${names[@]:1}")
  done
  run_one "${target}" &
  pids+=($!)
  names+=("${target}")
done
for pid in "${pids[@]}"; do
  if ! wait "${pid}"; then failed=1; fi
done
if [[ ${failed} -ne 0 ]]; then
  echo "fuzz: findings above" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, no finding"
