#!/usr/bin/env bash
# make demo-corpora: every non-IEMOCAP layout end to end on a small synthetic corpus, then one
# cross-corpus run.  For each corpus (params/corpora/<corpus>.yaml): mger synth --layout <corpus>
# -> prepare -> align -> extract (the demo's random wav2vec2, the MiniLM text model, eGeMAPS)
# -> train a few rows -> report; then params/corpora/cross.yaml (CREMA-D -> RAVDESS).  Prints one
# results table per corpus, the cross-corpus table and the total time; stops at the first error.
# Usage: tools/demo_corpora.sh [corpus ...]   (default: all five, then cross)
# MGER: the mger command (default: mger on PATH).
set -euo pipefail
MGER=${MGER:-mger}
CORPORA=("$@")
[ ${#CORPORA[@]} -gt 0 ] || CORPORA=(msp_podcast meld crema_d ravdess csv cross)
start=$(date +%s)
step() { echo "== demo-corpora [$(( $(date +%s) - start )) s] $*"; }
trap 'echo "demo-corpora: FAILED at: $BASH_COMMAND" >&2' ERR

step "demo model"
$MGER demo-model --params params/corpora/common.yaml
for corpus in "${CORPORA[@]}"; do
  p=params/corpora/$corpus.yaml
  if [ "$corpus" != cross ]; then
    step "$corpus: synth"
    $MGER synth --params "$p" --force
  fi
  step "$corpus: prepare"; $MGER prepare --params "$p"
  step "$corpus: align";   $MGER align --params "$p"
  step "$corpus: extract"; $MGER extract --params "$p"
  step "$corpus: train (params/corpora/common.yaml's rows)"; $MGER train --params "$p" --experiment all
  step "$corpus: report";  $MGER report --params "$p"
done
for corpus in "${CORPORA[@]}"; do
  echo; echo "######## $corpus (params/corpora/$corpus.yaml, reports/corpora/$corpus/results.md)"
  $MGER summary --params "params/corpora/$corpus.yaml"
done
echo "make demo-corpora: $(( $(date +%s) - start )) s for ${CORPORA[*]} (installation not counted)"
