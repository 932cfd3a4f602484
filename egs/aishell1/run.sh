#!/usr/bin/env bash
# P-DARTS for CTC speech recognition on AISHELL-1 (pdarts-asr-transfer, sections 3-4.4, Table 1):
# search cells in the revised (ASRNET-B) and original DARTS (ASRNET-A) op spaces, retrain the small
# evaluation networks with CTC, score token accuracy and greedy CER on test.
#
# Real corpus:       ./run.sh --corpus-dir /data/aishell   (downloaded there if absent)
# Synthetic corpus:  ./run.sh --synth true   (small profile conf/synth.yaml; 67.1 min from an empty
#                    recipe dir on 2 CPU cores of an AMD EPYC with OMP_NUM_THREADS=1, the other core busy,
#                    on 2026-12-03: 2 searched + 6 random networks x 4 epochs; 19.2 min on 2 threads before
#                    the random architectures and equal epochs)
set -euo pipefail

# ---- options (each can be given as --name value) --------------------------------------------------
stage=0                     # first stage to run (see Stages above)
stop_stage=100              # last stage to run
synth=false                 # make and use a synthetic AISHELL-1 tree (conf/synth.yaml profile)
corpus_dir=corpus/aishell   # holds data_aishell/ (downloaded there if absent)
unit=                       # syllable (the paper's CI syllables), char, or bpe; default syllable,
                            # char with --synth true (greedy CER needs units that spell characters)
spaces="asr_revised darts"  # op spaces searched: asr_revised -> ASRNET-B, darts -> ASRNET-A
seeds=                      # searches per space, the lowest dev TER of the derived networks wins; default 3, 1 with --synth true
train_seeds=1               # stages 5-6: retrain each searched network with seeds 1..N (seed K>1 in
                            # exp/train_<net>_seedK); the report gives mean ± std over them
random_archs=3              # stage 5: per space, random genotypes drawn from its op space under the
                            # P-DARTS op caps, trained like the searched one (seed K for draw K); 0: none
search_set=data/train_sp    # split in halves: weights / alphas
nj=2                        # feature extraction and corpus synthesis jobs
device=auto                 # auto, cpu, cuda or cuda:N
profile=                    # per-config overrides; --synth true sets conf/synth.yaml
synth_speakers="24 3 4"     # synthetic corpus: train dev test speakers
synth_utts=30               # synthetic corpus: utterances per speaker
seed=1                      # seed of the synthetic corpus

cmdline="$0 $*"
help_message="Usage: $0 [options]
 e.g.: $0 --synth true
 e.g.: $0 --corpus-dir /data/aishell --unit char --spaces asr_revised --stage 4
Stages: 0 download (or synthesize), 1 data prep, 2 lang prep, 3 features (+ speed perturbation),
        4 P-DARTS search, 5 retrain, 6 evaluate, 7 report"

. ./path.sh
. ./cmd.sh
. utils/parse_options.sh

if [ $# -ne 0 ]; then echo "$0: unexpected argument '$1' (options are --name value; see $0 --help)" >&2; exit 1; fi
echo "$cmdline"

if $synth; then
  corpus_dir=corpus/synth_aishell1
  [ -z "$profile" ] && profile=conf/synth.yaml
  [ -z "$unit" ] && unit=char
  [ -z "$seeds" ] && seeds=1
fi
unit=${unit:-syllable}
seeds=${seeds:-3}
. utils/choices.sh
check_choice --unit "$unit" syllable char bpe
for s in $spaces; do check_choice --spaces "$s" asr_revised darts; done
profile_opt=${profile:+--profile $profile}
lang=data/lang_${unit}
# The retrainings of a network: seed 1 in exp/train_<net>, seed K>1 in exp/train_<net>_seedK.
seed_dirs() { for k in $(seq 1 "$train_seeds"); do echo "exp/train_$1$( [ "$k" -gt 1 ] && echo "_seed$k" )"; done; }
net_of() { case $1 in asr_revised) echo asrnet_b ;; darts) echo asrnet_a ;; *) echo "unknown space $1" >&2; return 1 ;; esac; }

. utils/stage.sh

if run_stage 0 "corpus"; then
  if $synth; then
    # shellcheck disable=SC2086
    python -m nasr.bin.make_synth_corpus aishell1 "$corpus_dir" --num-speakers $synth_speakers \
      --utts-per-speaker "$synth_utts" --seed "$seed" --nj "$nj"
  elif [ ! -f "$corpus_dir/data_aishell/transcript/aishell_transcript_v0.8.txt" ]; then
    local/download.sh "$corpus_dir"
  else
    log "corpus already in $corpus_dir"
  fi
  # A corpus unpacked by hand still holds the release's per-speaker wav/*.tar.gz.
  $synth || local/untar_speakers.sh "$corpus_dir/data_aishell"
  done_stage 0
fi

if run_stage 1 "data prep"; then
  python local/prepare.py --corpus-dir "$corpus_dir" --out-dir data
  for x in train dev test; do utils/validate_data_dir.sh --no-feats data/$x; done
  done_stage 1
fi

if run_stage 2 "lang prep ($unit units)"; then
  python -m nasr.bin.prepare_lang --data data/train --lexicon data/local/lexicon.txt --unit "$unit" \
    --out "$lang"
  done_stage 2
fi

if run_stage 3 "features (40 log-mel + deltas as 3 channels, CMVN; speed perturbation 0.9/1.1 on train)"; then
  for f in 0.9 1.1; do utils/perturb_data_dir_speed.sh $f data/train data/train_sp$f; done
  utils/combine_data.sh data/train_sp data/train data/train_sp0.9 data/train_sp1.1
  for x in train train_sp dev test; do
    python -m nasr.bin.compute_feats --data-dir data/$x --preset asr_fbank --nj "$nj"
  done
  # Utterances over 1024 frames are filtered when the training sets are loaded (max_frames in the
  # configs; the count is in each log); batches pad T to a multiple of 4.
  done_stage 3
fi

if run_stage 4 "P-DARTS search ($spaces, $seeds seed(s))"; then
  for space in $spaces; do
    python -m nasr.bin.search_pdarts --config conf/pdarts_${space}.yaml $profile_opt \
      --train-data "$search_set" --valid-data data/dev --lang "$lang" --exp-dir exp/pdarts_${space} \
      --seeds "$seeds" \
      --device "$device"
  done
  done_stage 4
fi

if run_stage 5 "retrain the small evaluation networks (CTC)"; then
  for space in $spaces; do
    net=$(net_of $space)
    k=0
    for d in $(seed_dirs $net); do
      k=$((k + 1))
      python -m nasr.bin.train_ctc --config conf/train_${net}.yaml $profile_opt \
        --train-data data/train_sp --valid-data data/dev --lang "$lang" \
        --genotype exp/pdarts_${space}/genotype.json --exp-dir "$d" --device "$device" --resume \
        $( [ "$k" -gt 1 ] && echo "--override seed=$k" )
    done
    # Does the search beat chance? Cells drawn uniformly from the same space under the same caps,
    # trained with the searched network's config (same epochs, schedule and data).
    for k in $(seq 1 "$random_archs"); do
      python -m nasr.bin.random_genotype --config conf/pdarts_${space}.yaml $profile_opt --seed "$k" \
        --out exp/random_${space}_arch$k/genotype.json
      python -m nasr.bin.train_ctc --config conf/train_${net}.yaml $profile_opt \
        --train-data data/train_sp --valid-data data/dev --lang "$lang" \
        --genotype exp/random_${space}_arch$k/genotype.json --exp-dir exp/train_random_${space}_arch$k \
        --device "$device" --resume --override seed=$k
    done
  done
  done_stage 5
fi

if run_stage 6 "evaluate (greedy CTC, token accuracy, CER)"; then
  for space in $spaces; do
    for d in $(seed_dirs "$(net_of $space)") $(seq -f "exp/train_random_${space}_arch%g" 1 "$random_archs"); do
      python -m nasr.bin.decode_ctc --exp-dir "$d" --data data/test --name test --device "$device"
    done
  done
  done_stage 6
fi

if run_stage 7 "report"; then
  note="Command: \`cd egs/aishell1 && ./run.sh $( $synth && echo '--synth true' || echo "--corpus-dir $corpus_dir") --unit $unit$( [ "$train_seeds" -gt 1 ] && echo " --train-seeds $train_seeds" || true)\`"
  python -m nasr.bin.report_ctc --exp-root exp --set test --out RESULTS.md \
    --title "AISHELL-1: P-DARTS for CTC speech recognition ($( $synth && echo synthetic corpus || echo "$corpus_dir"))" \
    --note "$note"
  done_stage 7
fi
