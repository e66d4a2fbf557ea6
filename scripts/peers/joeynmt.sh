#!/usr/bin/env bash
# Joey NMT 2.3 on this machine, for a same-machine speed ratio (docs/speed.md): trains LSTM-medium on Multi30k en-fr
# with the SentencePiece model of one of our runs, logging target tokens/s every 5 updates, stops it after SECONDS
# (default 330: about 30 updates here), and prints the figures and the peak RSS.
#   SEQ2SEQ_DATA=../shared/data bash scripts/peers/joeynmt.sh runs/en-fr [SECONDS]
# Needs network access to PyPI once (a venv in $JOEY_VENV, default /tmp/joeyenv, on top of this environment's torch).
# Two one-line patches make Joey NMT 2.3 run with today's libraries: sentencepiece no longer has SetVocabulary
# (Joey then keeps every piece of the model; its vocabulary still holds only the pieces of the training data), and
# torch's ReduceLROnPlateau no longer takes `verbose`.
set -euo pipefail
run_dir=${1:?usage: joeynmt.sh RUN_DIR [SECONDS]}
seconds=${2:-330}
here=$(cd "$(dirname "$0")" && pwd)
data=$(cd "${SEQ2SEQ_DATA:?set SEQ2SEQ_DATA}/multi30k" && pwd)
venv=${JOEY_VENV:-/tmp/joeyenv}
work=${JOEY_DATA:-/tmp/joeydata}
if [ ! -x "$venv/bin/python" ]; then
  python -m venv --system-site-packages "$venv"
  "$venv/bin/pip" install -q --no-deps joeynmt==2.3.0 subword-nmt sacremoses
  "$venv/bin/pip" install -q tensorboard importlib_metadata seaborn plotly pandas
  site=$("$venv/bin/python" -c "import joeynmt, os; print(os.path.dirname(joeynmt.__file__))")
  sed -i 's/self.spm.SetVocabulary(vocab._itos)/getattr(self.spm, "SetVocabulary", lambda v: None)(vocab._itos)/' \
    "$site/tokenizers.py"
  sed -i '/"verbose": False,/d' "$site/builders.py"
fi
mkdir -p "$work"
for split in train val test_2016_flickr; do
  for lang in en fr; do ln -sf "$data/$split.$lang" "$work/$split.$lang"; done
done
cp "$run_dir/spm.model" "$work/spm.model"
sed "s#JOEY_DATA#$work#g" "$here/joeynmt-lstm-medium.yaml" > "$work/config.yaml"
rm -rf "$work/model"
log="$work/train.log"
/usr/bin/time -v timeout "$seconds" "$venv/bin/python" -m joeynmt train "$work/config.yaml" > "$log" 2>&1 || true
grep "Tokens per Sec" "$log" | sed 's/.*Step: *\([0-9]*\).*Tokens per Sec: *\([0-9]*\).*/step \1: \2 target tokens\/s/'
grep "Maximum resident" "$log"
