#!/usr/bin/env bash
# Instructions securestored executes per get and per set at two commits, counted by callgrind
# (`securestore-bench --instructions`), and their ratio: a regression in the serving path shows as a
# count, not a time, so it shows on a noisy machine too.
#
# Usage: scripts/compare-instructions.sh [OLD [NEW]]   (default HEAD~1 HEAD; any commit-ish)
#   CALLS=N                 gets and sets counted per daemon [default 2000]
#   COMPARE_TARGET_DIR=DIR  where both commits' daemons are built [default target/compare-instructions]
#
# Each commit is checked out in a temporary `git worktree` and only its `securestored` is built
# (release, one shared target folder, so dependencies are compiled once; a commit's binary is kept
# under DIR/bin and reused by later runs). Both daemons are driven by the bench of the current work
# tree, so only the daemon differs. Needs valgrind.
set -euo pipefail
repo="$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)"
cd "$repo"
old="${1:-HEAD~1}"
new="${2:-HEAD}"
calls="${CALLS:-2000}"
build_dir="${COMPARE_TARGET_DIR:-$repo/target/compare-instructions}"
command -v valgrind >/dev/null || { echo "compare-instructions: valgrind is not installed" >&2; exit 2; }

tmp="$(mktemp -d "${TMPDIR:-/tmp}/compare-instructions.XXXXXX")"
cleanup() {
  for wt in "$tmp"/src-*; do
    [[ -d "$wt" ]] && git -C "$repo" worktree remove --force "$wt" 2>/dev/null
  done
  git -C "$repo" worktree prune
  rm -rf "$tmp"
}
trap cleanup EXIT

echo "building the bench of the work tree" >&2
cargo build --release --quiet -p securestore-bench
bench="${CARGO_TARGET_DIR:-$repo/target}/release/securestore-bench"

# Prints the path of commit $1's securestored, building it if no earlier run did.
daemon_of() {
  local sha="$1" bin="$build_dir/bin/securestored-$1"
  if [[ ! -x "$bin" ]]; then
    local wt="$tmp/src-$sha"
    git -C "$repo" worktree add --detach --quiet "$wt" "$sha"
    echo "building securestored at ${sha:0:12}" >&2
    (cd "$wt" && CARGO_TARGET_DIR="$build_dir" cargo build --release --quiet -p securestore-daemon --bin securestored) >&2
    mkdir -p "$build_dir/bin"
    cp "$build_dir/release/securestored" "$bin"
    git -C "$repo" worktree remove --force "$wt"
  fi
  echo "$bin"
}

# Runs the counts against daemon $2 and leaves the bench's output in $tmp/$1.txt.
count() {
  echo "counting instructions of ${1:0:12} ($calls gets, $calls sets)" >&2
  "$bench" --instructions --calls "$calls" --daemon "$2" --data "$tmp/data-$1" >"$tmp/$1.txt"
}

figure() { awk -v what="$2" '$0 ~ "^instructions per " what ":" { print $4 }' "$tmp/$1.txt"; }
spread() { sed -n 's/^spread over \([0-9]*\) rounds: \(.*\) instructions per call$/\2 (\1 rounds)/p' "$tmp/$1.txt"; }

old_sha="$(git rev-parse --verify "$old^{commit}")"
new_sha="$(git rev-parse --verify "$new^{commit}")"
old_bin="$(daemon_of "$old_sha")"
new_bin="$(daemon_of "$new_sha")"
count "$old_sha" "$old_bin"
count "$new_sha" "$new_bin"

printf '\n%-28s %14s %14s %9s\n' "instructions per call" "$old (${old_sha:0:8})" "$new (${new_sha:0:8})" "new÷old"
for what in get set; do
  a="$(figure "$old_sha" "$what")"
  b="$(figure "$new_sha" "$what")"
  awk -v w="$what" -v a="$a" -v b="$b" 'BEGIN { printf "%-28s %14d %14d %8.3f×\n", w, a, b, b / a }'
done
printf '(%s calls of each; spread per call, old: %s; new: %s)\n' \
  "$calls" "$(spread "$old_sha")" "$(spread "$new_sha")"
