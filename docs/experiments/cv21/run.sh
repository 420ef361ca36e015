#!/usr/bin/env bash
# Issue 21's 3-fold protocol, as written in docs/experiments/selection-rule.txt (2026-12-02) before any fold ran.
#
#   docs/experiments/cv21/run.sh KAGGLE_3M_DIR [CANDIDATE...]      (default: C0 C1 C2 C3, fold by fold)
#
# Run it from a checkout that stays put while it works (a `git worktree`), since a fold takes ~15 minutes.
# Each finished fold's card is copied into RESULTS (default: this checkout's docs/experiments/cv21) and
# committed there at once, so a stopped session loses only the fold in progress; a fold whose card is
# already there is skipped, so running it again resumes the protocol.
set -u
cd "$(dirname "$0")/../../.."
data=${1:?kaggle_3m folder}; shift
candidates=("$@"); [ ${#candidates[@]} -gt 0 ] || candidates=(C0 C1 C2 C3)
results=${RESULTS:-$PWD/docs/experiments/cv21}
work=${CV_WORK:-/tmp/cv21}
py=${PY:-$PWD/.venv/bin/python}
export HF_HUB_OFFLINE=1
mkdir -p "$results" "$work"

# candidate -> "stage-1 epochs|stage-2 epochs|options for both stages"
declare -A recipe=(
  [C0]="10|4|--precision fp32 --image-size 128"
  [C1]="31|13|--precision bf16 --image-size 128"
  [C2]="17|8|--precision bf16 --image-size 160"
  [C3]="31|13|--precision bf16 --image-size 128 --small-tumour-boost 3"
)

commit() {  # commit one result file alone (the checkout may have other work in progress)
  local repo; repo=$(git -C "$results" rev-parse --show-toplevel) || return 0
  for _ in 1 2 3 4 5 6; do
    git -C "$repo" add -- "$@" && git -C "$repo" commit -q --only -m "cv21: $(basename "$1" .json) (issue 21 protocol)" -- "$@" && return 0
    sleep 10
  done
  echo "could not commit $*" >&2
}

for fold in 0 1 2; do
  for c in "${candidates[@]}"; do
    IFS='|' read -r e1 e2 opts <<<"${recipe[$c]}"
    done_card="$results/$c-f$fold.json"
    [ -f "$done_card" ] && continue
    common=(--task seg --fold "$fold/3" --seed 0 --no-epoch-validation --no-bar --data "$data")
    s1="$work/$c-f$fold-full"; s2="$work/$c-f$fold-refine"
    echo "$(date -u +%FT%TZ) $c fold $fold: stage 1"
    if [ ! -f "$s1/model_card.json" ]; then
      # shellcheck disable=SC2086
      "$py" -m lggdemo.train --preset full "${common[@]}" --epochs "$e1" $opts --out "$s1" || exit 1
    fi
    echo "$(date -u +%FT%TZ) $c fold $fold: stage 2"
    # shellcheck disable=SC2086
    "$py" -m lggdemo.train --preset refine "${common[@]}" --epochs "$e2" $opts --init-from "$s1" --out "$s2" || exit 1
    cp "$s1/model_card.json" "$results/.$c-f$fold-stage1.json.tmp" && mv "$results/.$c-f$fold-stage1.json.tmp" "$results/$c-f$fold-stage1.json"
    cp "$s2/model_card.json" "$results/.$c-f$fold.json.tmp" && mv "$results/.$c-f$fold.json.tmp" "$done_card"
    commit "$done_card" "$results/$c-f$fold-stage1.json"
    echo "$(date -u +%FT%TZ) $c fold $fold: done"
  done
done
