#!/bin/sh
# A tiny external trial for Shoal searches, in plain POSIX sh + awk: it reads its parameters (a
# JSON object such as {"x":0.31,"y":-0.12}) from stdin, "trains" for 8 steps on a made-up objective
# that peaks at x = 0.3, y = -0.2, and prints one metric line per step in Shoal's format:
#   SHOAL_METRIC {"step": 3, "accuracy": 0.71, "loss": 0.29}
# Any program that does the same works: see examples/external/pytorch-trial.py.
read -r params
echo "trial parameters: $params"
echo "$params" | awk '
function num(key,   m) {
    if (match($0, "\"" key "\"[ ]*:[ ]*-?[0-9.eE+-]+")) {
        m = substr($0, RSTART, RLENGTH); sub(/^[^:]*:[ ]*/, "", m); return m + 0
    }
    return 0
}
{
    x = num("x"); y = num("y");
    final = 1 - (x - 0.3) ^ 2 - (y + 0.2) ^ 2;
    for (step = 1; step <= 8; step++) {
        acc = final - (final - 0.1) * exp(-0.6 * step);
        printf "SHOAL_METRIC {\"step\": %d, \"total_steps\": 8, \"accuracy\": %.6f, \"loss\": %.6f}\n", step, acc, 1 - acc;
        fflush();
        system("sleep 0.05");
    }
}'
