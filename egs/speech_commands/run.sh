#!/usr/bin/env bash
# DARTS keyword spotting on Speech Commands (darts-kws-speech-commands): search a cell, retrain the
# network stacked from it, and compare it with Res15 and TC-ResNet14-1.5 in a table like Table 2.
#
# Real corpus:       ./run.sh --corpus-dir /data/speech_commands_v0.01   (downloaded there if absent)
# Synthetic corpus:  ./run.sh --synth true   (small profile conf/synth.yaml; from an empty recipe dir
#                    13.4 min on 2 CPU cores of an AMD EPYC on 2026-12-04 with --random-archs 0 (make
#                    demo; search 12 epochs, every model 40 epochs; 10.9 min with a 6-epoch search);
#                    earlier code and profiles: 27.1 min on 2026-12-02,
#                    17.4 min on a faster day; stages 4-6 alone took 43.7 min with --seeds 3 as two
#                    1-thread jobs on 2026-12-03)
# Own data dirs:     ./run.sh --stage 3 --train-set data/mytrain --valid-set data/mydev --test-set data/mytest
set -euo pipefail

# ---- options (each can be given as --name value) --------------------------------------------------
stage=0                     # first stage to run (see Stages above)
stop_stage=100              # last stage to run
synth=false                 # make and use the synthetic Speech Commands tree (conf/synth.yaml profile)
corpus_dir=corpus/speech_commands_v0.01  # the corpus tree (downloaded there if absent)
version=v0.01               # v0.01 (the paper) or v0.02
keywords=yes,no,up,down,left,right,on,off,go,stop  # the keyword classes (other words: _unknown_)
split=paper                 # paper: seeded 40/40/20 split by speaker; official: the corpus's lists
train_set=data/train        # searched on train (weights) + valid (alphas); retrained on train+valid
valid_set=data/valid        # data dir of the alpha half of the search
test_set=data/test          # data dir scored in the table
space=nas1                  # op space of the search: nas1 or nas2
layers=6                    # cells of the retrained network: 6, or 12 (conf/train_<space>_l12.yaml)
search=darts                # darts, or tower (tower-search-kws-lid: blocks B2, conf/tower_b2.yaml)
num_trainers=2              # --search tower: trainers searching in parallel on one store
tower_store=exp/search_tower/store.db  # --search tower: SQLite file, or a database URL for many machines
nj=2                        # feature extraction and corpus synthesis jobs
device=auto                 # auto, cpu, cuda or cuda:N
profile=                    # per-config overrides; --synth true sets conf/synth.yaml
synth_speakers=150          # synthetic corpus size: speakers x 30 words
seed=1                      # seed of the data split and the synthetic corpus
results=RESULTS.md          # the report stage's table (make demo writes exp/RESULTS.md instead,
                            # so the committed table keeps the rows of runs the demo does not make)
seeds=1                     # stages 4-6: train each model with seeds 1..N (exp dirs train_<model>_seedK)
random_archs=3              # stage 6: random architectures from the search's space and op caps, trained
                            # at the searched network's budget (seed K for draw K); 0: none
baselines=                  # stage 6 hand-designed baselines; default "res15 tc_resnet14" ("tc_resnet14"
                            # with --synth true: Res15 cannot get the searched network's epochs there)
pareto_targets=             # stage 8 (off when empty): parameter targets, e.g. "60000 120000 240000": one
                            # search per target with the budget cost: {metric: params, target: T} on the
                            # retrained network, retrained and scored; then every trained network is
                            # exported to ONNX and timed, and accuracy against parameters and against
                            # latency goes into one figure in $results, after the table of stage 7
                            # (rewritten with the budgeted networks' rows)

help_message="Usage: $0 [options]
 e.g.: $0 --synth true
 e.g.: $0 --corpus-dir /data/speech_commands_v0.01 --space nas2 --stage 3
 e.g.: $0 --synth true --stage 4 --stop-stage 5 --layers 12; $0 --synth true --stage 7   # 12-cell rows
Stages: 0 corpus (download or synthesize), 1 data prep, 2 features, 3 search, 4 retrain,
        5 evaluate (--search tower: 3-5 search, retrain, evaluate a tower), 6 baselines (Res15,
        TC-ResNet14-1.5, random architectures; every model at the same epochs), 7 report,
        8 deployment (only with --pareto-targets): budgeted searches, ONNX export, accuracy vs size/latency"

. ./path.sh
. ./cmd.sh
. utils/parse_options.sh

if [ $# -ne 0 ]; then echo "$0: unexpected argument '$1' (options are --name value; see $0 --help)" >&2; exit 1; fi
if $synth; then
  corpus_dir=corpus/synth_speech_commands
  [ -z "$profile" ] && profile=conf/synth.yaml
  # Res15 (958M MACs per clip) at the searched network's epochs would take longer than the whole
  # small-profile run, and a Res15 given fewer epochs is no fair comparison: left out (see synth.yaml).
  [ -z "$baselines" ] && baselines=tc_resnet14
fi
[ -z "$baselines" ] && baselines="res15 tc_resnet14"
. utils/choices.sh
check_choice --version "$version" v0.01 v0.02
check_choice --split "$split" paper official
check_choice --space "$space" nas1 nas2
check_choice --search "$search" darts tower
profile_opt=${profile:+--profile $profile}
search_exp=exp/search_${space}
train_name=train_${space}
[ "$layers" = 6 ] || train_name=${train_name}_l$layers  # the 6-cell network keeps its name
train_exp=exp/$train_name
if [ ! -f "conf/$train_name.yaml" ]; then
  echo "$0: --layers $layers: no conf/$train_name.yaml (shipped: 6 and 12 cells)" >&2; exit 1
fi

. utils/stage.sh
# The options that name this run's data and seeds, as the reports print its command.
recipe_options() {
  if $synth; then echo -n "--synth true"; else echo -n "--corpus-dir $corpus_dir --version $version --split $split"; fi
  if [ "$seeds" -gt 1 ]; then echo -n " --seeds $seeds"; fi
}

if run_stage 0 "corpus"; then
  if $synth; then
    python -m nasr.bin.make_synth_corpus speech_commands "$corpus_dir" \
      --num-speakers "$synth_speakers" --seed "$seed" --nj "$nj"
  elif [ ! -f "$corpus_dir/testing_list.txt" ]; then
    local/download.sh "$corpus_dir" "$version"
  else
    log "corpus already in $corpus_dir"
  fi
  done_stage 0
fi

if run_stage 1 "data prep"; then
  python local/prepare.py --corpus-dir "$corpus_dir" --out-dir data --keywords "$keywords" \
    --split "$split" --seed "$seed"
  for x in "$train_set" "$valid_set" "$test_set"; do utils/validate_data_dir.sh --no-feats "$x"; done
  done_stage 1
fi

if run_stage 2 "features (MFCC 40, 30 ms / 10 ms, 20 Hz-4 kHz, 101 frames)"; then
  for x in "$train_set" "$valid_set" "$test_set"; do
    python -m nasr.bin.compute_feats --data-dir "$x" --config conf/mfcc.yaml --nj "$nj"
  done
  done_stage 2
fi

if [ "$search" = darts ] && run_stage 3 "DARTS search ($space)"; then
  python -m nasr.bin.search --config conf/search_${space}.yaml $profile_opt \
    --train-data "$train_set" --valid-data "$valid_set" --exp-dir "$search_exp" --device "$device"
  done_stage 3
fi

if [ "$search" = darts ] && run_stage 4 "retrain conf/$train_name.yaml from $search_exp/genotype.json ($seeds seed(s))"; then
  for k in $(seq 1 "$seeds"); do
    python -m nasr.bin.train --config conf/$train_name.yaml $profile_opt \
      --train-data "$train_set" "$valid_set" --genotype "$search_exp/genotype.json" \
      --exp-dir "${train_exp}_seed$k" --device "$device" --override seed=$k
  done
  done_stage 4
fi

if [ "$search" = darts ] && run_stage 5 "evaluate"; then
  for k in $(seq 1 "$seeds"); do
    python -m nasr.bin.evaluate --exp-dir "${train_exp}_seed$k" --data "$test_set" --name test --device "$device"
  done
  done_stage 5
fi

if [ "$search" = tower ]; then  # stages 3-5 for the tower search (see egs/lid for the LID recipe)
  if run_stage 3 "tower search (B2, $num_trainers trainers)"; then
    $train_cmd --max-jobs-run "$num_trainers" JOB=1:$num_trainers exp/search_tower/log/trainer.JOB.log \
      python -m nasr.bin.tower_search --config conf/tower_b2.yaml $profile_opt --train-data "$train_set" \
        --valid-data "$valid_set" --exp-dir exp/search_tower --store "$tower_store" --trainer-id JOB
    done_stage 3
  fi
  if run_stage 4 "retrain the best tower (no ensembling for KWS, as in the paper)"; then
    python -m nasr.bin.tower_ensemble train --config conf/tower_b2.yaml $profile_opt \
      --store "$tower_store" --train-data "$train_set" --valid-data "$valid_set" \
      --exp-dir exp/train_tower --member 1
    done_stage 4
  fi
  if run_stage 5 "evaluate the tower"; then
    python -m nasr.bin.tower_ensemble evaluate --exp-dir exp/train_tower --data "$test_set" --name test \
      --num-members 1 --format kws
    done_stage 5
  fi
fi

if run_stage 6 "baselines ($baselines, $seeds seeds; $random_archs random $space architectures)"; then
  for b in $baselines; do
    for k in $(seq 1 "$seeds"); do
      python -m nasr.bin.train --config conf/train_${b}.yaml $profile_opt \
        --train-data "$train_set" "$valid_set" --exp-dir exp/train_${b}_seed$k --device "$device" \
        --override seed=$k
      python -m nasr.bin.evaluate --exp-dir exp/train_${b}_seed$k --data "$test_set" --name test --device "$device"
    done
  done
  # Does the search beat chance? Cells drawn uniformly from the same space under the same op caps,
  # trained with the searched network's config (same epochs, schedule, augmentation and data).
  [ "$search" = darts ] || random_archs=0
  for k in $(seq 1 "$random_archs"); do
    python -m nasr.bin.random_genotype --config conf/search_${space}.yaml $profile_opt --seed "$k" \
      --out exp/random_${space}_arch$k/genotype.json
    python -m nasr.bin.train --config conf/train_${space}.yaml $profile_opt \
      --train-data "$train_set" "$valid_set" --genotype exp/random_${space}_arch$k/genotype.json \
      --exp-dir exp/train_random_${space}_arch$k --device "$device" --override seed=$k
    python -m nasr.bin.evaluate --exp-dir exp/train_random_${space}_arch$k --data "$test_set" --name test \
      --device "$device"
  done
  done_stage 6
fi

write_report() {  # the table of every scored model in exp/ (stage 7; stage 8 again, after scoring its own)
  python -m nasr.bin.report --exp-root exp --set test --out "$results" \
    --title "Speech Commands: DARTS keyword spotting ($( $synth && echo synthetic corpus || echo "$corpus_dir"))" \
    --note "Command: \`cd egs/speech_commands && ./run.sh $(recipe_options)\`"
}

if run_stage 7 "report"; then
  write_report
  done_stage 7
fi

if [ -n "$pareto_targets" ] && [ "$search" = darts ] && \
    run_stage 8 "deployment: searches at parameter targets $pareto_targets, ONNX export, accuracy vs size and latency"; then
  # The budget is on the network that is deployed: the retrained one, as its resolved config records it.
  cost_table=exp/cost_${train_name}.json
  python -m nasr.bin.profile_ops --space "$space" --config "${train_exp}_seed1/config.yaml" --out "$cost_table"
  for t in $pareto_targets; do
    python -m nasr.bin.search --config conf/search_${space}.yaml $profile_opt \
      --train-data "$train_set" --valid-data "$valid_set" --exp-dir "${search_exp}_params$t" --device "$device" \
      --override "cost={table: $cost_table, metric: params, target: $t}"
    python -m nasr.bin.train --config conf/$train_name.yaml $profile_opt \
      --train-data "$train_set" "$valid_set" --genotype "${search_exp}_params$t/genotype.json" \
      --exp-dir "${train_exp}_params$t" --device "$device"
    python -m nasr.bin.evaluate --exp-dir "${train_exp}_params$t" --data "$test_set" --name test --device "$device"
  done
  for d in exp/train_*; do
    if [ -f "$d/decode_test/results.json" ]; then python -m nasr.bin.export --exp-dir "$d" --format onnx; fi
  done
  # The main table gains the budgeted networks' rows (stage 7 ran before they were scored), then
  # the Pareto section goes after it (the report rewrites $results).
  write_report
  python -m nasr.bin.report_pareto --exp-root exp --set test --results "$results" \
    --note "Command: \`cd egs/speech_commands && ./run.sh $(recipe_options) --stage 8 --pareto-targets \"$pareto_targets\"\`"
  done_stage 8
fi
