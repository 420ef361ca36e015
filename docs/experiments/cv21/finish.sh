#!/usr/bin/env bash
# Issue 21's protocol after its folds (run.sh): pool, apply the rule, the winner's grade folds, the bundled run.
#
#   [BUNDLED=0] docs/experiments/cv21/finish.sh KAGGLE_3M_DIR      (BUNDLED=0: stop before the bundled run)
#
# Every step is skipped when its result is already in RESULTS, and each result is committed the moment it
# exists, so running it again resumes. It stops, saying why, where a person must act: a candidate's folds
# missing, today's recipe (C0) winning (nothing new ships), or the `bundled` preset not yet holding the
# winner's recipe. It writes the bundled run to CV_WORK/bundled-<winner> with both estimates recorded in its
# card; copying that folder into weights/ is left to a person, with weights/README.md.
set -eu
cd "$(dirname "$0")/../../.."
data=${1:?kaggle_3m folder}
results=${RESULTS:-$PWD/docs/experiments/cv21}
work=${CV_WORK:-/tmp/cv21}
py=${PY:-$PWD/.venv/bin/python}
export HF_HUB_OFFLINE=1
code=$PWD
repo=$(git -C "$results" rev-parse --show-toplevel)
rel=${results#"$repo"/}  # RESULTS as a path inside its repository
log() { echo "$(date -u +%FT%TZ) $*"; }
commit() {  # commit result files alone (the checkout may have other work in progress)
  for _ in 1 2 3 4 5 6; do
    git -C "$repo" add -- "$@" && git -C "$repo" commit -q --only -m "cv21: $(basename "$1" .json) (issue 21 protocol)" -- "$@" && return 0
    sleep 10
  done
  echo "could not commit $*" >&2
}
crossval() {  # `lggdemo-crossval` of this checkout, run in RESULTS' repository: the fold runs are then
  # named in what it writes by their paths there (docs/experiments/cv21/C1-f0.json), not by this machine's
  (cd "$repo" && "$py" -c 'import sys; sys.path.insert(0, sys.argv.pop(1))
from lggdemo.crossval import main
raise SystemExit(main(sys.argv[1:]))' "$code" "$@")
}
publish() {  # publish SRC as DEST in RESULTS, temp then rename
  cp "$1" "$results/.$2.tmp" && mv "$results/.$2.tmp" "$results/$2"
}

pooled=()
for c in C0 C1 C2 C3; do
  for f in 0 1 2; do [ -f "$results/$c-f$f.json" ] || { log "$c fold $f has not run: run.sh first"; exit 1; }; done
  if [ ! -f "$results/pooled-$c.json" ]; then
    crossval "$rel/$c-f0.json" "$rel/$c-f1.json" "$rel/$c-f2.json" --name "$c" --json "$rel/pooled-$c.json"
    commit "$results/pooled-$c.json"
  fi
  pooled+=("$rel/pooled-$c.json")
done
if [ ! -f "$results/compare.json" ]; then
  # The protocol's rule and targets (selection-rule.txt, 2026-12-02): margin 0.005; targets reported, never chosen by.
  crossval --compare "${pooled[@]}" --baseline C0 --max-slice-loss 0.005 --target per_volume_dice_mean=0.85 \
    --target tumour_slice_dice=0.80 --target small_tumour_dice=0.55 --json "$rel/compare.json"
  commit "$results/compare.json"
fi
winner=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["winner"])' "$results/compare.json")
log "winner by the rule: $winner"
if [ "$winner" = C0 ]; then
  log "today's recipe wins: nothing new ships (selection-rule.txt); the grade folds of the shipped recipe are a person's call"
  exit 0
fi
# The bundled preset must be the winner's recipe before anything is trained with it.
"$py" - "$results/$winner-f0.json" <<'EOF'
import json, sys
from lggdemo.train.config import TrainConfig
fold = json.load(open(sys.argv[1]))
stage1 = json.load(open(sys.argv[1].replace(".json", "-stage1.json")))
bundled = TrainConfig.from_preset("bundled", data=".", out=".")
want = {"image_size": fold["train_config"]["image_size"], "seg_epochs": stage1["train_config"]["seg_epochs"],
        "refine_epochs": fold["train_config"]["seg_epochs"], "precision": fold["train_config"].get("precision"),
        "small_tumour_boost": fold["train_config"].get("small_tumour_boost")}
have = {k: getattr(bundled, k) for k in want}
if have != want:
    sys.exit(f"the bundled preset is {have}, the winner's folds were trained with {want}: set the preset first")
EOF

grade_cards=()
for f in 0 1 2; do
  card="$results/$winner-f$f-grade.json"
  if [ ! -f "$card" ]; then
    log "$winner fold $f: grade model"
    "$py" -m lggdemo.train --preset bundled --task grade --fold "$f/3" --seed 0 --no-epoch-validation --no-bar \
      --data "$data" --complete-from "$work/$winner-f$f-refine" --out "$work/$winner-f$f-grade"
    publish "$work/$winner-f$f-grade/model_card.json" "$(basename "$card")"
    commit "$card"
  fi
  grade_cards+=("$rel/$(basename "$card")")
done
if [ ! -f "$results/grade-oof-$winner.json" ]; then
  crossval --grade "${grade_cards[@]}" --json "$rel/grade-oof-$winner.json"
  commit "$results/grade-oof-$winner.json"
fi

if [ "${BUNDLED:-1}" = 0 ]; then  # a sitting too short for the ~30-minute bundled run stops here
  log "stopping before the bundled run (BUNDLED=0)"
  exit 0
fi
out="$work/bundled-$winner"
if [ ! -f "$results/bundled-$winner-card.json" ]; then
  if [ ! -f "$out/model_card.json" ]; then  # the trainer publishes its folder whole, so a card means a finished run
    log "bundled run ($winner) on every patient"
    "$py" -m lggdemo.train --preset bundled --seed 0 --no-bar --data "$data" --out "$out"
  fi
  crossval "$rel/$winner-f0.json" "$rel/$winner-f1.json" "$rel/$winner-f2.json" --name "$winner" --record-in "$out"
  crossval --grade "${grade_cards[@]}" --record-in "$out"
  publish "$out/model_card.json" "bundled-$winner-card.json"
  commit "$results/bundled-$winner-card.json"
fi
log "done: $out holds the weights to ship (copy into weights/ with weights/README.md)"
