#!/usr/bin/env bash
# REPRODUCTION.md from scratch, offline, on CPU: every run, then the CSVs, figures and tables it cites.
#   bash analysis/reproduce.sh glue     # claims 1-4: MiniLM + SST-2 (see each experiment's file for its size)
#   bash analysis/reproduce.sh e2e      # claim 5: pretrain the small GPT-2 (20 minutes), then 9 E2E runs
#   bash analysis/reproduce.sh report   # results/repro/: runs.csv, figures/, and the tables of REPRODUCTION.md
#   bash analysis/reproduce.sh all      # the three in order
# The third edition's stages resume where they stopped (a run whose metrics.json exists is not run again; one that
# died continues from its checkpoint) and keep each run's record in results/repro/runs/ as soon as it finishes:
#   bash analysis/reproduce.sh search3  # each method's learning rate per GLUE task, on the carved rows
#   bash analysis/reproduce.sh seeds3   # 5 seeds per method at its selected rate
#   bash analysis/reproduce.sh placed   # claim 1's adapters of the second edition with the reference placement
#   bash analysis/reproduce.sh pretrain3     # claim 5's ladder: the 1.4M and 5.9M LMs pretrained here, side by side
#   bash analysis/reproduce.sh e2e_search3   # each method's E2E rate per base model, on 100 carved training MRs
#   bash analysis/reproduce.sh e2e_seeds3    # 3 seeds per method and base model at its selected rate
# DRY_RUN=1 prints a stage's run lines (folder, experiment, overrides) and runs nothing.
# SKIP_KEPT=1 skips the runs whose record results/repro/runs/ already keeps (committed by an earlier session).
# TASKS="sst2 mrpc stsb" (or cola-e10: CoLA at 10 epochs, patience from the fifth) and
# METHODS="lora full bitfit adapter_h" pick a part; JOBS=2 runs side by side; for E2E,
# BASES="gpt2-mini gpt2-6m smollm2-135m" and E2E_METHODS="lora full adapter_l".
# On 2 cores, run `glue` and `e2e` side by side in two shells with OMP_NUM_THREADS=1, then `report`.
# Run from the repository root with ../shared beside it. Runs go to outputs/repro/<experiment>/; `report` copies
# what the report cites (metrics.json, the Hydra config, the subspace and amplification runs' layer-0 adapters and
# snapshots, the E2E outputs) into results/repro/ and leaves checkpoints and full-model weights behind.
set -euo pipefail
cd "$(dirname "$0")/.."
stage=${1:?usage: bash analysis/reproduce.sh glue|e2e|report|all}

glue() {
  for experiment in repro_methods repro_sizes repro_prefix_sizes repro_subspace repro_amplification \
      repro_rank_ablation repro_weight_type_ablation; do
    python -m lora_repro.run +experiment=$experiment hydra.sweep.dir=outputs/repro/$experiment
  done
}

e2e() {
  python -m lora_repro.pretrain lm=cpu
  python -m lora_repro.run +experiment=repro_e2e hydra.sweep.dir=outputs/repro/repro_e2e
}

declare -A GLUE_DIR=([sst2]=SST-2 [mrpc]=MRPC [stsb]=STS-B [cola]=CoLA [rte]=RTE [cola-e10]=CoLA)
# a task key with a budget of its own (its runs, search and selected rates apart from the plain key's): at 6 epochs
# with patience from the first, CoLA's LoRA runs stopped at MCC 0 (one class predicted) at every rate, while the
# same LoRA without early stopping leaves that floor in its fourth epoch (REPRODUCTION.md, CoLA)
declare -A GLUE_TASK=([cola-e10]=cola)
declare -A TASK_BUDGET=([cola-e10]="train.epochs=10 train.min_epochs=5")
# 1-2-5 log grids, 5 rates per method, bracketing the second edition's fixed rate (conf/experiment/repro_sst2.yaml),
# extended by a rate where the best one sat on the grid's edge (SST-2: full FT's 2e-4 -> 5e-4, LoRA's 5e-4 -> 2e-4)
declare -A LR_GRID=([full]="1e-5 2e-5 5e-5 1e-4 2e-4 5e-4" [bitfit]="5e-4 1e-3 2e-3 5e-3 1e-2"
                    [adapter_h]="2e-4 5e-4 1e-3 2e-3 5e-3" [lora]="2e-4 5e-4 1e-3 2e-3 5e-3 1e-2")
TASKS3=${TASKS:-sst2 mrpc stsb}
METHODS3=${METHODS:-lora full bitfit adapter_h}

keep() {  # what the report cites of the run folder outputs/repro/X, in results/repro/runs/X
  local rel=${1#outputs/repro/}
  for file in metrics.json .hydra/config.yaml .hydra/overrides.yaml; do
    install -D -m 644 "$1/$file" "results/repro/runs/$rel/$file"
  done
}

one() {  # one run of experiment $2 into outputs/repro/$1, unless it has finished there (or, with SKIP_KEPT=1, its
  # record is kept in results/repro/runs/$1: a fresh clone then goes on where the committed stages stopped)
  local dir=outputs/repro/$1 kept=results/repro/runs/$1 experiment=$2; shift 2
  if [[ -n ${SKIP_KEPT:-} && -f $kept/metrics.json ]]; then
    echo "kept: $kept (SKIP_KEPT=1), not run again"
    return 0
  fi
  if [[ ! -f $dir/metrics.json ]]; then
    mkdir -p "$dir"
    if ! OMP_NUM_THREADS=1 python -m lora_repro.run "$@" +experiment="$experiment" resume=true hydra.run.dir="$dir" \
        >"$dir/console.log" 2>&1; then
      echo "failed: $dir (see $dir/console.log); rerun the stage to retry it" >&2
      return 0
    fi
  fi
  keep "$dir"
  tail -n 1 "$dir/console.log"
}

launch() {  # the run lines on stdin, JOBS at a time; DRY_RUN=1 prints them (tests/test_reproduce.py composes them)
  if [[ -n ${DRY_RUN:-} ]]; then cat; else xargs -P "${JOBS:-2}" -L 1 bash analysis/reproduce.sh one; fi
}

task_args() {
  echo "task=glue/${GLUE_TASK[$1]:-$1} task.data_dir=../shared/data/glue/${GLUE_DIR[$1]} ${TASK_BUDGET[$1]:-}"
}

select_rates() {  # lr_select on the search runs kept in $1 (each method's rate into $2), once any has finished
  if [[ -z ${DRY_RUN:-} ]] && compgen -G "$1/*/*/metrics.json" >/dev/null; then
    python -m lora_repro.analysis.lr_select "$1" --out "$2"
  fi
}

search3() {
  local t m lr
  for t in $TASKS3; do for m in $METHODS3; do for lr in ${LR_GRID[$m]}; do
    echo "repro3_search/$t/$m/lr$lr repro3_search $(task_args $t) method=$m train.lr=$lr"
  done; done; done | launch
  for t in $TASKS3; do select_rates "results/repro/runs/repro3_search/$t" "results/repro/search/$t"; done
}

seeds3() {
  local t m seed
  for t in $TASKS3; do
    if [[ ! -f results/repro/search/$t/lr/selected.yaml ]]; then
      echo "seeds3: results/repro/search/$t/lr/selected.yaml is missing; run TASKS=$t bash $0 search3 first" >&2
      exit 1
    fi
    for m in $METHODS3; do for seed in 0 1 2 3 4; do
      echo "repro3_seeds/$t/$m/$seed repro3_glue --config-dir results/repro/search/$t +lr=selected $(task_args $t) method=$m seed=$seed"
    done; done
  done | launch
}

BASES3=${BASES:-gpt2-mini gpt2-6m smollm2-135m}
E2E_METHODS3=${E2E_METHODS:-lora full adapter_l}
# full FT's grid extended by 5e-3 and 1e-2: on the 1.4M LM its best carved BLEU sat on the edge, at 2e-3, then 5e-3
declare -A E2E_GRID=([lora]="5e-4 1e-3 2e-3 5e-3 1e-2" [full]="1e-4 2e-4 5e-4 1e-3 2e-3 5e-3 1e-2"
                     [adapter_l]="5e-4 1e-3 2e-3 5e-3 1e-2")
# SmolLM2-135M costs ~5 s a step on one core and beam 10 ~4 s an MR, so it gets a budget of its own (~25 CPU-minutes
# a search run, ~45 a seed run; not ~2 h for 1,600 pairs x 4 epochs): 400 pairs (50 steps an epoch), <= 3 epochs,
# warm-up 10 steps, 50 carved MRs, the first 100 test MRs; the LMs pretrained here take repro3_e2e's budget as it is
declare -A E2E_BUDGET=([smollm2-135m]="model.path=../shared/models/smollm2-135m-instruct \
model.gguf_file=SmolLM2-135M-Instruct.Q4_1.gguf task.max_train_samples=400 task.carved_validation=50 \
task.max_eval_mrs=100 train.epochs=3 train.warmup_steps=10")

pretrain3() {  # resumable: a killed pretraining continues from its checkpoint (out_dir/checkpoint, every 50 steps)
  local lm
  declare -A out=([cpu]=gpt2-mini-cpu [cpu-6m]=gpt2-6m-cpu)
  for lm in cpu cpu-6m; do
    [[ -f outputs/pretrained/${out[$lm]}/pretrain.json ]] || echo "$lm"
  done | xargs -r -P "${JOBS:-2}" -I{} sh -c 'OMP_NUM_THREADS=1 python -m lora_repro.pretrain lm={} resume=true \
      train.checkpoint_every=50 hydra.run.dir=outputs/pretrain/lm-{} > outputs/pretrain-{}.log 2>&1 ||
      echo "failed: lm={} (outputs/pretrain-{}.log)"'
}

e2e_search3() {
  local b m lr
  for b in $BASES3; do for m in $E2E_METHODS3; do for lr in ${E2E_GRID[$m]}; do
    echo "repro3_e2e_search/$b/$m/lr$lr repro3_e2e_search model=$b ${E2E_BUDGET[$b]:-} method=$m train.lr=$lr"
  done; done; done | launch
  for b in $BASES3; do select_rates "results/repro/runs/repro3_e2e_search/$b" "results/repro/search/e2e-$b"; done
}

e2e_seeds3() {
  local b m seed
  for b in $BASES3; do
    if [[ ! -f results/repro/search/e2e-$b/lr/selected.yaml ]]; then
      echo "e2e_seeds3: results/repro/search/e2e-$b/lr/selected.yaml is missing; run BASES=$b bash $0 e2e_search3 first" >&2
      exit 1
    fi
    for m in $E2E_METHODS3; do for seed in 0 1 2; do
      echo "repro3_e2e/$b/$m/$seed repro3_e2e --config-dir results/repro/search/e2e-$b +lr=selected model=$b ${E2E_BUDGET[$b]:-} method=$m seed=$seed"
    done; done
  done | launch
}

placed() {  # claim 1's adapters of the second edition, rerun with the reference placement
  local m seed
  for m in adapter_h adapter_p; do for seed in 0 1 2 3 4; do
    echo "repro_adapters_placed/$m/$seed repro_adapters_placed method=$m seed=$seed"
  done; done | launch
}

report() {
  rm -rf results/repro/runs
  (cd outputs/repro && find . \( -name metrics.json -o -path '*/.hydra/config.yaml' -o -path '*/.hydra/overrides.yaml' \
      -o -path './repro_subspace/*/adapter.safetensors' -o -path './repro_amplification/*/adapter.safetensors' \
      -o -path './repro_amplification/*/snapshots/*.safetensors' -o -name 'e2e_*.txt' \) -print0 |
    xargs -0 -I{} install -D -m 644 {} ../../results/repro/runs/{})
  # the adapters and snapshots keep the layer make_figures.py analyses (LAYER) and the head: 0.4 MB, not 2.4 MB at r=64
  python - <<'PY'
import re, sys
from pathlib import Path
from safetensors import safe_open
from safetensors.torch import save_file
sys.path.insert(0, "analysis")
from make_figures import LAYER
other_layer = re.compile(rf"\.(layer|layers|h)\.(?!{LAYER}\.)\d+\.")
runs = Path("results/repro/runs")
for path in [*runs.glob("repro_subspace/**/*.safetensors"), *runs.glob("repro_amplification/**/*.safetensors")]:
    with safe_open(str(path), framework="pt") as f:
        kept = {k: f.get_tensor(k) for k in f.keys() if not other_layer.search(k)}
        metadata = f.metadata()
    save_file(kept, str(path), metadata=metadata)
PY
  if [[ -f outputs/pretrained/gpt2-mini-cpu/pretrain.json ]]; then
    cp outputs/pretrained/gpt2-mini-cpu/pretrain.json results/repro/pretrain.json
  else  # the e2e stage ran elsewhere: its runs were copied into outputs/repro, its LM's record is the committed one
    echo "report: no outputs/pretrained/gpt2-mini-cpu/pretrain.json here; keeping results/repro/pretrain.json" >&2
    test -f results/repro/pretrain.json
  fi
  local lm
  for lm in gpt2-mini-cpu gpt2-6m-cpu; do  # claim 5's ladder: each LM pretrained here, its held-out perplexity
    if [[ -f outputs/pretrained/$lm/pretrain.json ]]; then
      install -D -m 644 outputs/pretrained/$lm/pretrain.json results/repro/pretrain/$lm.json
    fi
  done
  python -m lora_repro.results results/repro/runs --out results/repro/runs.csv --summary-out results/repro/summary.csv
  python analysis/make_figures.py results/repro/runs --out results/repro/figures
  python analysis/report.py --write
}

case $stage in
  glue | e2e | report | search3 | seeds3 | placed | pretrain3 | e2e_search3 | e2e_seeds3) $stage ;;
  one) shift; one "$@" ;;
  all) glue && e2e && report ;;
  *) echo "error: stage=$stage is not a stage; valid choices: glue e2e report search3 seeds3 placed pretrain3 e2e_search3 e2e_seeds3 all" >&2; exit 1 ;;
esac
