#!/usr/bin/env bash
# Transfer of the cells searched on AISHELL-1 to AISHELL-2 (pdarts-asr-transfer, section 4.4,
# Table 2): the medium evaluation networks (32 cells; C=30 ASRNET-B, C=38 ASRNET-A) and the
# DFSMN-SAN baseline trained with CTC on several workers with BMUF, the last checkpoints averaged,
# decoded greedily and with a pruned 5-gram LM through a TLG WFST, scored in CER.
#
# Real corpus:       ./run.sh --corpus-dir /data/aishell2 [--lexicon /data/DaCiDian/lexicon.txt]
# Synthetic corpus:  ./run.sh --synth true   (small profile conf/synth.yaml; 16.8 min on 2 CPU cores
#                    of an AMD EPYC, after egs/aishell1 made the genotypes)
set -euo pipefail

# ---- options (each can be given as --name value) --------------------------------------------------
stage=0                     # first stage to run (see Stages above)
stop_stage=100              # last stage to run
synth=false                 # make and use a synthetic AISHELL-2 tree (conf/synth.yaml profile)
corpus_dir=corpus/aishell2  # holds iOS/data and AISHELL-DEV-TEST-SET (the release layout)
lexicon=                    # word lexicon (e.g. DaCiDian); empty: built from pypinyin at data prep
unit=                       # syllable (the paper's CI syllables), char, or bpe; default syllable,
                            # char with --synth true (greedy CER needs units that spell characters)
oov=map-to-unk              # words outside the lexicon: map-to-unk | skip-utt | error
nets=                       # Table 2's rows, conf/train_<net>.yaml each (default: asrnet_b asrnet_a
                            # dfsmn_san; with --synth true asrnet_b dfsmn_san, to fit 30 min on 2 cores)
genotype=../aishell1/exp/pdarts_asr_revised/genotype.json   # ASRNET-B cells (revised op space)
genotype_a=../aishell1/exp/pdarts_darts/genotype.json       # ASRNET-A cells (DARTS op space)
train_seeds=1               # stages 5-6: train each network with seeds 1..N (seed K>1 in
                            # exp/train_<net>_seedK); the verdicts give mean ± std over them
random_archs=                # stage 5: random ASRNET-B cells drawn from the revised op space under the
                            # search's op caps, trained like ASRNET-B (seed K for draw K); default 3,
                            # 0 with --synth true (each is another ASRNET-B training: 14-27 min on 2 cores)
search_config=../aishell1/conf/pdarts_asr_revised.yaml  # the search whose space and caps the draws use
speed_perturb=true          # 2-fold speed perturbation (0.9/1.1) of train, as the paper
lm_order=5                  # n-gram order of the word LM (modified Kneser-Ney)
lm_prune=1e-7               # Stolcke pruning threshold (0: none)
distributed=bmuf            # bmuf | ddp | none
ngpu=0                      # GPUs per node (one worker each, nccl); 0: CPU workers over gloo
cpu_workers=                # worker processes per node when ngpu=0 (default 1; 2 with --synth true)
nnodes=1                    # nodes; with >1 run this stage on every node with the same master
master_addr=localhost       # rendezvous host (multi-node)
master_port=29517           # rendezvous port (multi-node)
average=5                   # decode with the mean of the last N epoch checkpoints
test_sets="test"            # decoded and scored sets (e.g. "dev test")
beam=16                     # WFST decoding (kaldi-decoder over TLG)
max_active=7000             # WFST decoding: most active states per frame
acoustic_scale=1.0          # WFST decoding: weight of the network's log-posteriors
blank_skip=0.95             # drop frames with blank posterior above this (empty: keep all)
prefix_beam=false           # also run the lexicon CTC prefix beam search with the same ARPA
lm_weight=1.0               # its LM weight
nj=2                        # feature extraction and corpus synthesis jobs
profile=                    # per-config overrides; --synth true sets conf/synth.yaml
synth_speakers="40 3 3"     # synthetic corpus: train dev test speakers
synth_utts=25               # synthetic corpus: utterances per speaker
seed=1                      # seed of the synthetic corpus

cmdline="$0 $*"
help_message="Usage: $0 [options]
 e.g.: $0 --synth true
 e.g.: $0 --corpus-dir /data/aishell2 --ngpu 8 --nets asrnet_b --genotype ../aishell1/exp/pdarts_asr_revised/genotype.json
Stages: 0 synthesize (or check) the corpus, 1 data prep (+ lexicon), 2 lang, LM and TLG,
        3 features (+ speed perturbation), 4 genotypes, 5 train (CTC, BMUF), 6 average + decode + score,
        7 report"

. ./path.sh
. ./cmd.sh
. utils/parse_options.sh

if [ $# -ne 0 ]; then echo "$0: unexpected argument '$1' (options are --name value; see $0 --help)" >&2; exit 1; fi
echo "$cmdline"

if $synth; then
  corpus_dir=corpus/synth_aishell2
  [ -z "$profile" ] && profile=conf/synth.yaml
  [ -z "$nets" ] && nets="asrnet_b dfsmn_san"
  # BMUF over 2 gloo processes (1 thread each) with the default block momentum 1 - 1/2: it leaves
  # CTC's all-blank plateau now that each sync resets the workers' SGD momentum (README.md, A/B).
  [ -z "$cpu_workers" ] && cpu_workers=2
  [ -z "$unit" ] && unit=char
  [ -z "$random_archs" ] && random_archs=0
fi
[ -z "$cpu_workers" ] && cpu_workers=1
random_archs=${random_archs:-3}
unit=${unit:-syllable}
[ -z "$nets" ] && nets="asrnet_b asrnet_a dfsmn_san"
. utils/choices.sh
check_choice --unit "$unit" syllable char bpe
check_choice --oov "$oov" map-to-unk skip-utt error
check_choice --distributed "$distributed" bmuf ddp none
for n in $nets; do check_choice --nets "$n" asrnet_b asrnet_a dfsmn_san; done
profile_opt=${profile:+--profile $profile}
lang=data/lang_${unit}
train_set=data/train
$speed_perturb && train_set=data/train_sp

. utils/stage.sh

# The genotype a net is trained from ("" for the hand-designed baseline).
# The trainings of a network: seed 1 in exp/train_<net>, seed K>1 in exp/train_<net>_seedK.
seed_dirs() { for k in $(seq 1 "$train_seeds"); do echo "exp/train_$1$( [ "$k" -gt 1 ] && echo "_seed$k" )"; done; }
genotype_of() {
  case $1 in asrnet_b) echo "$genotype" ;; asrnet_a) echo "$genotype_a" ;; dfsmn_san) echo "" ;;
    *) echo "unknown net '$1' (known: asrnet_b asrnet_a dfsmn_san)" >&2; return 1 ;; esac
}
space_of() { case $1 in asrnet_b) echo asr_revised ;; asrnet_a) echo darts ;; *) echo "" ;; esac; }
# The genotype file a net trains from: the AISHELL-1 search's; with --synth true, when that search
# was not run, the one shipped in conf/synth_genotypes (a real tiny P-DARTS run on the synthetic
# AISHELL-1; its search.json tells how it was made). Otherwise a missing file is an error.
resolve_genotype() {
  local g space shipped
  g=$(genotype_of "$1"); space=$(space_of "$1")
  if [ -z "$g" ] || [ -f "$g" ]; then echo "$g"; return 0; fi
  shipped=conf/synth_genotypes/pdarts_${space}/genotype.json
  if $synth && [ -f "$shipped" ]; then
    log "WARNING: $g is missing; $1 uses the shipped synthetic-corpus genotype $shipped" >&2
    echo "$shipped"; return 0
  fi
  echo "$0: $1 needs the $space genotype $g, which does not exist. Make it with" \
       "(cd ../aishell1 && ./run.sh --spaces $space --stop-stage 4), or pass" \
       "--$( [ "$1" = asrnet_b ] && echo genotype || echo genotype-a ) PATH" \
       "(with --synth true: conf/synth_genotypes/pdarts_${space}/genotype.json)" >&2
  return 1
}

if run_stage 0 "corpus"; then
  if $synth; then
    # shellcheck disable=SC2086
    python -m nasr.bin.make_synth_corpus aishell2 "$corpus_dir" --num-speakers $synth_speakers \
      --utts-per-speaker "$synth_utts" --seed "$seed" --nj "$nj"
  elif [ ! -f "$corpus_dir/iOS/data/wav.scp" ] && [ ! -f "$corpus_dir/AISHELL-2/iOS/data/wav.scp" ]; then
    echo "$0: no AISHELL-2 in $corpus_dir (it needs iOS/data/{wav.scp,trans.txt} and" \
         "AISHELL-DEV-TEST-SET/iOS/{dev,test}; the corpus is licensed, apply at aishelltech.com)" >&2
    exit 1
  else
    log "corpus in $corpus_dir"
  fi
  done_stage 0
fi

if run_stage 1 "data prep${lexicon:+ (lexicon $lexicon)}"; then
  python local/prepare_aishell2.py --corpus-dir "$corpus_dir" --out-dir data ${lexicon:+--lexicon "$lexicon"}
  for x in train dev test; do utils/validate_data_dir.sh --no-feats data/$x; done
  done_stage 1
fi

if run_stage 2 "lang ($unit units), ${lm_order}-gram LM (prune $lm_prune), TLG"; then
  python -m nasr.bin.prepare_lang --data data/train --lexicon data/local/lexicon.txt --unit "$unit" \
    --oov "$oov" --out "$lang"
  # The LM sees the words the lexicon spells; the others follow the same OOV policy.
  case $oov in skip-utt) lm_oov=skip ;; *) lm_oov=unk ;; esac
  python -m nasr.bin.train_ngram --text data/train/text --lexicon "$lang/lexicon.txt" --oov "$lm_oov" \
    --order "$lm_order" --prune "$lm_prune" --out data/lm/lm.arpa
  python -m nasr.bin.make_tlg --lang "$lang" --arpa data/lm/lm.arpa --out "$lang/graph"
  done_stage 2
fi

if run_stage 3 "features (40 log-mel + deltas as 3 channels, CMVN$($speed_perturb && echo '; speed perturbation 0.9/1.1'))"; then
  sets="train dev test"
  if $speed_perturb; then
    for f in 0.9 1.1; do utils/perturb_data_dir_speed.sh $f data/train data/train_sp$f; done
    utils/combine_data.sh data/train_sp data/train data/train_sp0.9 data/train_sp1.1
    sets="train_sp $sets"
  fi
  for x in $sets; do
    python -m nasr.bin.compute_feats --data-dir data/$x --preset asr_fbank --nj "$nj"
  done
  done_stage 3
fi

if run_stage 4 "genotypes from the AISHELL-1 search"; then
  for net in $nets; do
    g=$(resolve_genotype $net)   # fails here, before any training, when a genotype is missing
    log "$net: ${g:-hand-designed, no genotype}"
  done
  if [ "$random_archs" -gt 0 ] && [ ! -f "$search_config" ]; then
    echo "$0: --random-archs $random_archs draws from the search config $search_config, which does not" \
         "exist (fix: --search-config PATH to the aishell1 recipe's conf/pdarts_asr_revised.yaml, or --random-archs 0)" >&2
    exit 1
  fi
  done_stage 4
fi

if [ "$ngpu" -gt 0 ]; then nproc=$ngpu; device=cuda; else nproc=$cpu_workers; device=cpu; fi
launcher() {  # one process per GPU / CPU worker on each node; torchrun sets RANK, WORLD_SIZE, ...
  if [ "$nnodes" -gt 1 ]; then
    echo "python -m torch.distributed.run --nnodes $nnodes --nproc-per-node $nproc --rdzv-backend c10d" \
         "--rdzv-endpoint $master_addr:$master_port --rdzv-id aishell2_$1"
  elif [ "$nproc" -gt 1 ]; then
    echo "python -m torch.distributed.run --standalone --nproc-per-node $nproc"
  else
    echo python
  fi
}

if run_stage 5 "train ($nets; CTC, $distributed on $nnodes node(s) x $nproc $device worker(s))"; then
  for net in $nets; do
    g=$(resolve_genotype $net)
    k=0
    for d in $(seed_dirs $net); do
      k=$((k + 1))
      # shellcheck disable=SC2046,SC2086
      $(launcher $net$k) -m nasr.bin.train_ctc --config conf/train_${net}.yaml $profile_opt \
        --train-data "$train_set" --valid-data data/dev --lang "$lang" ${g:+--genotype "$g"} \
        --exp-dir "$d" --device "$device" --distributed "$distributed" --resume \
        $( [ "$k" -gt 1 ] && echo "--override seed=$k" )
    done
  done
  # Does the search beat chance? Random cells of the searched space under the same caps, trained
  # with ASRNET-B's config (same epochs, schedule, data and workers).
  for k in $(seq 1 "$random_archs"); do
    python -m nasr.bin.random_genotype --config "$search_config" --seed "$k" \
      --out exp/random_asr_revised_arch$k/genotype.json
    # shellcheck disable=SC2046,SC2086
    $(launcher random$k) -m nasr.bin.train_ctc --config conf/train_asrnet_b.yaml $profile_opt \
      --train-data "$train_set" --valid-data data/dev --lang "$lang" \
      --genotype exp/random_asr_revised_arch$k/genotype.json --exp-dir exp/train_random_asr_revised_arch$k \
      --device "$device" --distributed "$distributed" --resume --override seed=$k
  done
  done_stage 5
fi

if run_stage 6 "average the last $average checkpoints, decode (greedy, WFST$($prefix_beam && echo ', prefix beam')), score CER"; then
  for d in $(for net in $nets; do seed_dirs $net; done) $(seq -f "exp/train_random_asr_revised_arch%g" 1 "$random_archs"); do
    python -m nasr.bin.decode_ctc --exp-dir "$d" --average-last "$average" --average-only
    for x in $test_sets; do
      python -m nasr.bin.decode_ctc --exp-dir "$d" --data data/$x --name $x \
        --checkpoint avg-last-$average.pt --device "$device" --graph "$lang/graph" --beam "$beam" \
        --max-active "$max_active" --acoustic-scale "$acoustic_scale" ${blank_skip:+--blank-skip "$blank_skip"} \
        $($prefix_beam && echo "--arpa data/lm/lm.arpa --lm-weight $lm_weight")
    done
  done
  done_stage 6
fi

if run_stage 7 "report"; then
  opts="$( $synth && echo '--synth true' || echo "--corpus-dir $corpus_dir") --unit $unit$( [ "$train_seeds" -gt 1 ] && echo " --train-seeds $train_seeds" || true)"
  # the random-cell rows' count, when it is not the mode's default (3; 0 with --synth true)
  [ "$random_archs" != "$($synth && echo 0 || echo 3)" ] && opts="$opts --random-archs $random_archs"
  python -m nasr.bin.report_transfer --exp-root exp --sets "$test_sets" --out RESULTS.md \
    --title "AISHELL-2: transfer of the searched cells ($( $synth && echo synthetic corpus || echo "$corpus_dir"))" \
    --command "cd egs/aishell2 && ./run.sh $opts" --reference dfsmn_san
  done_stage 7
fi
