#!/usr/bin/env bash
# From a CSV file to compressed models and their predictions, on a local cluster:
#   examples/compress-and-serve.sh [WORK_DIR]
# trains an MLP on a generated two-moons-like CSV (`shoal local`), prunes half its hidden units
# (a `[prune]` job), quantizes it to int8 (`shoal quantize`), writes predictions with every
# artifact (`shoal predict`) and compares them (`shoal compare`). Run from the repository root
# after `cargo build --release`.
set -euo pipefail

shoal=./target/release/shoal
work=${1:-$(mktemp -d)}
mkdir -p "$work"

# 2,000 rows: x, y and a class (1 inside a ring, 0 outside), with a header.
awk 'BEGIN { srand(7); print "x,y,class";
  for (i = 0; i < 2000; i++) { x = 4 * rand() - 2; y = 4 * rand() - 2; r = x * x + y * y;
    printf "%.4f,%.4f,%d\n", x, y, (r > 0.6 && r < 2.2) ? 1 : 0 } }' > "$work/ring.csv"

cat > "$work/ring.toml" <<TOML
name = "ring"
[model]
kind = "mlp"
layers = [{ width = 64 }, { width = 64 }]
[dataset]
kind = "csv"
path = "ring.csv"
label_column = "class"
normalize = "standard"
validation_split = 0.2
[optimizer]
kind = "sgd"
lr = 0.1
momentum = 0.9
[training]
batch_size = 32
epochs = 30
seed = 1
TOML
"$shoal" local "$work/ring.toml" --workers 1 --data-dir "$work/cluster"
fp32=$(ls -d "$work"/cluster/checkpoints/*/step-* | tail -n 1)

cat > "$work/ring-pruned.toml" <<TOML
$(sed 's/name = "ring"/name = "ring-pruned"/; s/epochs = 30/steps = 200/' "$work/ring.toml")
[inherit]
checkpoint = "$fp32"
[prune]
method = "structured"
sparsity = 0.5
TOML
"$shoal" local "$work/ring-pruned.toml" --workers 1 --data-dir "$work/cluster-pruned"
pruned=$(ls -d "$work"/cluster-pruned/checkpoints/*/step-* | tail -n 1)

"$shoal" quantize "$fp32" --calibration entropy --output "$work/ring-int8"

for artifact in "$fp32" "$pruned" "$work/ring-int8"; do
  "$shoal" predict "$artifact" --data "$work/ring.csv" --label-column class --header \
    -o "$work/$(basename "$artifact").predictions.csv"
done
"$shoal" compare "$fp32" "$pruned" "$work/ring-int8" --json "$work/compare.json"
echo "artifacts, predictions and compare.json are in $work"
