#!/usr/bin/env bash
# REPRODUCTION.md from scratch, offline, on CPU: every run, then the CSVs, figures and tables it cites.
#   bash analysis/reproduce.sh glue     # claims 1-4: MiniLM + SST-2 (see each experiment's file for its size)
#   bash analysis/reproduce.sh e2e      # claim 5: pretrain the small GPT-2 (20 minutes), then 9 E2E runs
#   bash analysis/reproduce.sh report   # results/repro/: runs.csv, figures/, and the tables of REPRODUCTION.md
#   bash analysis/reproduce.sh all      # the three in order
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
  python -m lora_repro.results results/repro/runs --out results/repro/runs.csv --summary-out results/repro/summary.csv
  python analysis/make_figures.py results/repro/runs --out results/repro/figures
  python analysis/report.py --write
}

case $stage in
  glue | e2e | report) $stage ;;
  all) glue && e2e && report ;;
  *) echo "error: stage=$stage is not a stage; valid choices: glue e2e report all" >&2; exit 1 ;;
esac
